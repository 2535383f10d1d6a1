"""Bearer tokens minted on this machine for a running mesh, from its own signing secret."""

from __future__ import annotations

from pathlib import Path

from mesh_common.auth import issue_token
from mesh_common.settings import CommonSettings, SettingsError, load


def mint(user: str, *, data_dir: Path | None = None, ttl_s: int = 24 * 3600) -> str:
    """Signs a token the mesh of `data_dir` accepts.

    The secret is `MESH_JWT_SECRET` when set, else the one the mesh keeps in its data
    directory; none is ever created here.

    Args:
        user: The token's subject (the owner of the meetings it reaches).
        data_dir: The mesh's data directory; None reads `MESH_DATA_DIR` (default `.mesh`).
        ttl_s: Lifetime in seconds.

    Returns:
        The token.

    Raises:
        SettingsError: An empty user, a lifetime under one second, a mesh that verifies
            RS256 tokens (they come from its identity provider), or no secret to sign with.
    """
    if not user.strip():
        raise SettingsError("the user must not be empty")
    if ttl_s < 1:
        raise SettingsError(f"the lifetime must be at least one second, not {ttl_s}")
    overrides: dict[str, object] = {} if data_dir is None else {"data_dir": data_dir}
    settings = load(CommonSettings, **overrides)
    if settings.jwt_public_key_file is not None:
        raise SettingsError(
            "this mesh verifies RS256 tokens (MESH_JWT_PUBLIC_KEY_FILE): get one from "
            "its identity provider"
        )
    return issue_token(user, settings.signing_secret(create=False), ttl_s=ttl_s)
