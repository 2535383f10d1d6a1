"""Bearer tokens: issuing them (dev mesh, tests) and verifying them (every service).

Tokens are JWTs signed with HS256 (a shared secret) or RS256 (a private key whose public
half the services hold). Every service verifies the token itself — the gateway forwards it
as gRPC metadata — so a caller inside the network gains nothing by skipping the gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jwt

from gen.mesh.v1 import errors_pb2
from mesh_common.errors import MeshError

AUDIENCE = "meeting-mesh"
METADATA_KEY = "authorization"
_LEEWAY_S = 30
# Tokens remembered as verified; past this many the memory starts over (a burst of
# distinct tokens costs one signature check each, as without it).
_VERIFIED_ENTRIES = 4096


@dataclass(frozen=True)
class Principal:
    """The verified caller of a request.

    Attributes:
        user: The token's subject; meetings are owned by it.
    """

    user: str


@dataclass(frozen=True)
class TokenVerifier:
    """Checks bearer tokens against a secret or a public key.

    A token that verified is remembered, exactly as sent, until it expires: a client sends
    the same token with every request, and checking its signature and claims again was a
    tenth of the gateway's and meeting_service's CPU per call. A changed token is a
    different key and is checked in full; an expired one is refused as always.

    Attributes:
        key: The HS256 secret, or the RS256 public key in PEM.
        algorithm: "HS256" or "RS256".
        audience: The `aud` claim every token must carry.
    """

    key: str
    algorithm: str = "HS256"
    audience: str = AUDIENCE
    _verified: dict[str, tuple[Principal, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def verify(self, authorization: str | None) -> Principal:
        """Verifies an `Authorization` value ("Bearer <jwt>").

        Args:
            authorization: The header or metadata value, or None when absent.

        Returns:
            The caller.

        Raises:
            MeshError: UNAUTHENTICATED when the value is missing, malformed, badly signed,
                expired, or for another audience. The message never echoes the token.
        """
        if not authorization:
            raise _unauthenticated("missing bearer token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthenticated("authorization must be 'Bearer <token>'")
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() > expires + _LEEWAY_S:
                raise _unauthenticated("token expired")
            return principal
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                leeway=_LEEWAY_S,
                options={"require": ["sub", "exp", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _unauthenticated("token expired") from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated("token is for another audience") from None
        except jwt.PyJWTError:
            raise _unauthenticated("invalid token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _unauthenticated("token has no subject")
        principal = Principal(user=subject)
        if len(self._verified) >= _VERIFIED_ENTRIES:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal


def issue_token(
    user: str,
    key: str,
    *,
    algorithm: str = "HS256",
    ttl_s: int = 24 * 3600,
    audience: str = AUDIENCE,
) -> str:
    """Signs a token for a user.

    Args:
        user: The subject.
        key: The HS256 secret or the RS256 private key in PEM.
        algorithm: "HS256" or "RS256".
        ttl_s: Lifetime; negative values make already-expired tokens (for tests).
        audience: The `aud` claim.

    Returns:
        The compact JWT.
    """
    now = int(time.time())
    claims = {"sub": user, "aud": audience, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, key, algorithm=algorithm)


def _unauthenticated(message: str) -> MeshError:
    return MeshError(errors_pb2.ERROR_REASON_UNAUTHENTICATED, message)
