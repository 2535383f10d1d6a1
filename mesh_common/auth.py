"""Bearer tokens: issuing them (dev mesh, tests) and verifying them (every service).

Tokens are JWTs signed with HS256 (a shared secret) or RS256 (a private key whose public
half the services hold). Every service verifies the token itself — the gateway forwards it
as gRPC metadata — so a caller inside the network gains nothing by skipping the gateway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from gen.meeting.v1 import meeting_pb2
from mesh_common.errors import MeshError

AUDIENCE = "meeting-mesh"
METADATA_KEY = "authorization"
_LEEWAY_SECONDS = 30


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

    Attributes:
        key: The HS256 secret, or the RS256 public key in PEM.
        algorithm: "HS256" or "RS256".
        audience: The `aud` claim every token must carry.
    """

    key: str
    algorithm: str = "HS256"
    audience: str = AUDIENCE

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
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated("authorization must be 'Bearer <token>'")
        try:
            claims = jwt.decode(
                token.strip(),
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                leeway=_LEEWAY_SECONDS,
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
        return Principal(user=subject)


def issue_token(
    user: str,
    key: str,
    *,
    algorithm: str = "HS256",
    ttl_seconds: int = 24 * 3600,
    audience: str = AUDIENCE,
) -> str:
    """Signs a token for a user.

    Args:
        user: The subject.
        key: The HS256 secret or the RS256 private key in PEM.
        algorithm: "HS256" or "RS256".
        ttl_seconds: Lifetime; negative values make already-expired tokens (for tests).
        audience: The `aud` claim.

    Returns:
        The compact JWT.
    """
    now = int(time.time())
    claims = {"sub": user, "aud": audience, "iat": now, "exp": now + ttl_seconds}
    return jwt.encode(claims, key, algorithm=algorithm)


def _unauthenticated(message: str) -> MeshError:
    return MeshError(meeting_pb2.ERROR_REASON_UNAUTHENTICATED, message)
