"""Credentials: issuing tokens (dev mesh, tests) and verifying them (every service).

A caller sends `Authorization: Bearer <credential>`, where the credential is either a JWT
(a user's token) or an API key (a server-to-server caller's, recognised by
`API_KEY_PREFIX`). Tokens are signed with HS256 (a shared secret), RS256 (a public key the
services hold), or by an identity provider whose keys come from a JWKS (`mesh_common.jwks`).
Every service verifies the credential itself — the gateway forwards it as gRPC metadata —
so a caller inside the network gains nothing by skipping the gateway. API keys are checked
where their hashes are stored (meeting_service), through an `ApiKeyVerifier`
(docs/security.md).
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

import jwt

from gen.mesh.v1 import errors_pb2
from mesh_common.errors import MeshError
from mesh_common.jwks import JwksKeys

AUDIENCE = "meeting-mesh"
METADATA_KEY = "authorization"
# What every API key starts with; the log redaction (mesh_common.logging) knows it too.
API_KEY_PREFIX = "mm_"
LEEWAY_S = 30.0
# Tokens remembered as verified; past this many the memory starts over (a burst of
# distinct tokens costs one signature check each, as without it).
_VERIFIED_ENTRIES = 4096


@dataclass(frozen=True)
class Principal:
    """The verified caller of a request.

    Attributes:
        user: The token's subject, or the API key's owner; meetings are owned by it.
        scopes: What the caller may do; None for every scope (a user's token).
        api_key_id: The API key the caller used; "" for a token.
    """

    user: str
    scopes: frozenset[str] | None = None
    api_key_id: str = ""

    def allows(self, scope: str | None) -> bool:
        """Tells whether the caller may call a method needing `scope`.

        Args:
            scope: The method's scope; None when it declares none, which only a user's
                token may call.

        Returns:
            True when allowed.
        """
        return self.scopes is None or (scope is not None and scope in self.scopes)


class ApiKeyVerifier(Protocol):
    """Checks an API key where the keys are stored."""

    async def verify_api_key(self, key: str) -> Principal:
        """Returns the key's owner and scopes.

        Raises:
            MeshError: UNAUTHENTICATED for an unknown or revoked key; AUTH_UNAVAILABLE
                when the store cannot be reached.
        """
        ...


def bearer_credential(authorization: str | None) -> str:
    """Takes the credential out of an `Authorization` value ("Bearer <credential>").

    Args:
        authorization: The header or metadata value, or None when absent.

    Returns:
        The credential.

    Raises:
        MeshError: UNAUTHENTICATED when the value is missing or malformed; the message
            never echoes it.
    """
    if not authorization:
        raise unauthenticated("missing bearer token")
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise unauthenticated("authorization must be 'Bearer <token>'")
    return credential


def is_api_key(credential: str) -> bool:
    """Tells an API key from a JWT by its prefix."""
    return credential.startswith(API_KEY_PREFIX)


@dataclass(frozen=True)
class TokenVerifier:
    """Checks JWTs against a secret, a public key, or an identity provider's JWKS.

    A token that verified is remembered, exactly as sent, until it expires: a client sends
    the same token with every request, and checking its signature and claims again was a
    tenth of the gateway's and meeting_service's CPU per call. A changed token is a
    different key and is checked in full; an expired one is refused as always.

    Attributes:
        key: The HS256 secret, or the RS256 public key in PEM; unused with `jwks`.
        algorithm: "HS256" or "RS256", for `key`.
        audience: The `aud` claim every token must carry.
        issuer: The `iss` claim every token must carry; None checks none.
        leeway_s: Clock skew tolerated on `exp`, `nbf` and `iat`.
        jwks: The identity provider's keys; when set, tokens are checked only against
            them (RS256 or ES256, chosen by the token's `kid`).
    """

    key: str = ""
    algorithm: str = "HS256"
    audience: str = AUDIENCE
    issuer: str | None = None
    leeway_s: float = LEEWAY_S
    jwks: JwksKeys | None = None
    _verified: dict[str, tuple[Principal, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    async def verify(self, token: str) -> Principal:
        """Verifies a JWT.

        Args:
            token: The compact JWT (see `bearer_credential`).

        Returns:
            The caller, with every scope.

        Raises:
            MeshError: UNAUTHENTICATED when the token is malformed, badly signed, expired,
                not yet valid, or for another audience or issuer; AUTH_UNAVAILABLE when the
                JWKS cannot be fetched. The message never echoes the token.
        """
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if time.time() > expires + self.leeway_s:
                raise unauthenticated("token expired")
            return principal
        key, algorithms = await self._signing_key(token)
        required = ["sub", "exp", "aud"] if self.issuer is None else ["sub", "exp", "aud", "iss"]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthenticated("token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("token is from another issuer") from None
        except jwt.PyJWTError:
            raise unauthenticated("invalid token") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise unauthenticated("token has no subject")
        if any(unicodedata.category(char) == "Cc" for char in subject):
            # A subject names an owner in every store and log; a control character (NUL,
            # which PostgreSQL text cannot hold, above all) is no one's name.
            raise unauthenticated("token subject holds a control character")
        principal = Principal(user=subject)
        if len(self._verified) >= _VERIFIED_ENTRIES:
            self._verified.clear()
        self._verified[token] = (principal, float(claims["exp"]))
        return principal

    async def _signing_key(self, token: str) -> tuple[str | jwt.PyJWK, list[str]]:
        """Returns the key that must have signed the token and the algorithms it allows."""
        if self.jwks is None:
            return self.key, [self.algorithm]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthenticated("invalid token") from None
        kid = header.get("kid")
        signing = await self.jwks.key(kid if isinstance(kid, str) else None)
        return signing, [signing.algorithm_name]


def issue_token(
    user: str,
    key: str,
    *,
    algorithm: str = "HS256",
    ttl_s: int = 24 * 3600,
    audience: str = AUDIENCE,
    issuer: str | None = None,
    kid: str | None = None,
    not_before_s: int = 0,
) -> str:
    """Signs a token for a user.

    Args:
        user: The subject.
        key: The HS256 secret, or the RS256/ES256 private key in PEM.
        algorithm: "HS256", "RS256" or "ES256".
        ttl_s: Lifetime; negative values make already-expired tokens (for tests).
        audience: The `aud` claim.
        issuer: The `iss` claim; none when None.
        kid: The `kid` header naming the signing key in a JWKS; none when None.
        not_before_s: Seconds from now until the token is valid (`nbf` and `iat`; for
            tests of clock skew).

    Returns:
        The compact JWT.
    """
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": user,
        "aud": audience,
        "iat": now + not_before_s,
        "exp": now + ttl_s,
    }
    if not_before_s:
        claims["nbf"] = now + not_before_s
    if issuer is not None:
        claims["iss"] = issuer
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def unauthenticated(message: str) -> MeshError:
    """Returns the error of a missing or refused credential."""
    return MeshError(errors_pb2.ERROR_REASON_UNAUTHENTICATED, message)
