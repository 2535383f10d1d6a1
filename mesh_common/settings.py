"""Settings shared by every service, and the way every service loads its own.

Each service defines a `pydantic_settings.BaseSettings` subclass of `CommonSettings` with its
own fields; values come from the environment (prefix `MESH_`) or a `.env` file. `load()`
validates everything at once and names every problem, so a misconfigured service says all
that is wrong in one start rather than one error per restart.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh_common.auth import TokenVerifier


class SettingsError(Exception):
    """Configuration is invalid; the message lists every problem."""


class CommonSettings(BaseSettings):
    """What every service reads.

    Attributes:
        data_dir: Where dev state lives: embedded PostgreSQL, certificates, the dev secret.
        log_level: Minimum level logged.
        log_format: "json", "text", or "auto" (text on a terminal, JSON otherwise).
        jwt_secret: HS256 secret for bearer tokens. Without it (and without a public key),
            the dev secret in `data_dir/jwt-secret` is used, created on first need.
        jwt_public_key_file: PEM public key for RS256 tokens; wins over the secret.
    """

    model_config = SettingsConfigDict(
        env_prefix="MESH_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Path(".mesh")
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None

    def token_verifier(self) -> TokenVerifier:
        """Returns the verifier for bearer tokens this service accepts."""
        if self.jwt_public_key_file is not None:
            return TokenVerifier(self.jwt_public_key_file.read_text(), algorithm="RS256")
        return TokenVerifier(self.signing_secret())

    def signing_secret(self, *, create: bool = True) -> str:
        """Returns the HS256 secret: the configured one, else the data directory's.

        The dev secret is created once (random, 0600) by the first service that needs it
        and reused, so tokens printed by `meeting-mesh token` keep working across restarts
        of the dev mesh.

        Args:
            create: Create the data directory's secret when there is none. A client
                minting a token passes False: a secret made for it would be one the
                running mesh does not know.

        Raises:
            SettingsError: Without `create`, there is no secret to read.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / "jwt-secret"
        if not path.exists() and not create:
            raise SettingsError(
                f"no signing secret in {path}: start the mesh with this data directory "
                "first (meeting-mesh dev --data-dir ...), or set MESH_JWT_SECRET to the "
                "mesh's secret"
            )
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return path.read_text().strip()


def load[S: BaseSettings](cls: type[S], **overrides: object) -> S:
    """Loads and validates settings, reporting every problem at once.

    Args:
        cls: The settings class.
        **overrides: Values that win over the environment (from command-line flags).

    Returns:
        The settings.

    Raises:
        SettingsError: One or more values are invalid; each is named with its variable.
    """
    prefix = str(cls.model_config.get("env_prefix", ""))
    try:
        values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"])
            problems.append(f"  {prefix}{name.upper()}: {error['msg']}")
        raise SettingsError("invalid settings:\n" + "\n".join(problems)) from None
