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

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mesh_common.auth import AUDIENCE, LEEWAY_S, TokenVerifier
from mesh_common.jwks import JwksKeys


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
        auth_issuer: The `iss` every token must carry; unset checks none.
        auth_audience: The `aud` every token must carry.
        auth_leeway_s: Clock skew tolerated on a token's `exp`, `nbf` and `iat`.
        auth_jwks_url: An identity provider's JWKS (http or https); when set (or
            `auth_jwks_file`), tokens are checked against its RS256/ES256 keys only.
        auth_jwks_file: A JWKS in a file, re-read like the URL.
        auth_jwks_cache_s: How long fetched keys are used before they are fetched again.
        auth_jwks_min_refresh_s: Shortest time between fetches caused by a token naming
            an unknown `kid`.
        grpc_keepalive_s: How often a gRPC client pings its server (`mesh_common.keepalive`).
        grpc_keepalive_timeout_s: How long a ping's answer may take before the connection
            counts as dead: a silent peer is found within the two added together.
        grpc_keepalive_min_s: The shortest interval between a client's pings a gRPC
            server accepts; at most `grpc_keepalive_s`.
        grpc_connect_timeout_s: How long a GPU call waits for its channel to connect
            before the peer counts as unreachable (gpu_proxy tries another node;
            meeting_service's job waits for a GPU without spending an attempt).
    """

    model_config = SettingsConfigDict(
        env_prefix="MESH_", env_file=".env", extra="ignore", validate_default=True
    )

    data_dir: Path = Path(".mesh")
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    jwt_secret: SecretStr | None = None
    jwt_public_key_file: Path | None = None
    auth_issuer: str | None = None
    auth_audience: str = Field(default=AUDIENCE, min_length=1)
    auth_leeway_s: float = Field(default=LEEWAY_S, ge=0)
    auth_jwks_url: str | None = Field(default=None, pattern=r"^https?://")
    auth_jwks_file: Path | None = None
    auth_jwks_cache_s: float = Field(default=300.0, gt=0)
    auth_jwks_min_refresh_s: float = Field(default=30.0, ge=0)
    grpc_keepalive_s: float = Field(default=10.0, gt=0)
    grpc_keepalive_timeout_s: float = Field(default=5.0, gt=0)
    grpc_keepalive_min_s: float = Field(default=5.0, gt=0)
    grpc_connect_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check_keepalive(self) -> CommonSettings:
        if self.grpc_keepalive_min_s > self.grpc_keepalive_s:
            raise ValueError(
                "MESH_GRPC_KEEPALIVE_MIN_S must not exceed MESH_GRPC_KEEPALIVE_S: a server "
                "would refuse the pings of its own clients"
            )
        return self

    def token_verifier(self) -> TokenVerifier:
        """Returns the verifier for bearer tokens this service accepts."""
        jwks_source = self.auth_jwks_url or self.auth_jwks_file
        jwks, key, algorithm = None, "", "HS256"
        if jwks_source is not None:
            jwks = JwksKeys(
                jwks_source,
                cache_s=self.auth_jwks_cache_s,
                min_refresh_s=self.auth_jwks_min_refresh_s,
            )
        elif self.jwt_public_key_file is not None:
            key, algorithm = self.jwt_public_key_file.read_text(), "RS256"
        else:
            key = self.signing_secret()
        return TokenVerifier(
            key,
            algorithm,
            audience=self.auth_audience,
            issuer=self.auth_issuer,
            leeway_s=self.auth_leeway_s,
            jwks=jwks,
        )

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
