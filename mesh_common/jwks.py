"""An identity provider's signing keys, from a JWKS URL or file, cached and refreshed.

The keys are fetched on first use and kept for `cache_s`; a token naming a `kid` the cache
does not hold triggers a fetch at once (the provider rotated its keys), but at most one per
`min_refresh_s`, so a stream of tokens with made-up `kid`s cannot make every call a fetch.
A fetch that fails keeps the keys already held. The URL is read with `urllib` in a thread
(this package stays free of any web framework); the file is read the same way, so a
deployment that mounts the JWKS as a file rotates keys by replacing it.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import jwt

from gen.mesh.v1 import errors_pb2
from mesh_common.errors import MeshError
from mesh_common.logging import logger

# The algorithms a JWKS key may sign with; a key's own `alg` (or its type and curve)
# picks one, and a token must use exactly that one.
ALGORITHMS = frozenset({"RS256", "ES256"})
_MAX_DOCUMENT_BYTES = 1024 * 1024


class JwksKeys:
    """The signing keys of one JWKS, by `kid`.

    Args:
        source: An http(s) URL or a file path.
        cache_s: How long fetched keys are used before they are fetched again.
        min_refresh_s: Shortest time between two fetches caused by an unknown `kid`.
        timeout_s: Deadline of one fetch.
        clock: Monotonic seconds (tests pass their own).

    Raises:
        ValueError: The URL is neither http nor https.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        cache_s: float = 300.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(source, str) and urlsplit(source).scheme not in ("http", "https"):
            raise ValueError(f"a JWKS URL must be http or https: {source!r}")
        self._source = source
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> jwt.PyJWK:
        """Returns the key a token names.

        Args:
            kid: The token's `kid` header; None is accepted when the JWKS holds one key.

        Returns:
            The key.

        Raises:
            MeshError: UNAUTHENTICATED when no key matches; AUTH_UNAVAILABLE when no keys
                could ever be fetched.
        """
        if self._keys is None or self._clock() - self._fetched_at >= self._cache_s:
            await self._refresh(self._fetched_at)
        found = self._find(kid)
        if found is None and self._clock() - self._fetched_at >= self._min_refresh_s:
            await self._refresh(self._fetched_at)
            found = self._find(kid)
        if found is None:
            raise MeshError(
                errors_pb2.ERROR_REASON_UNAUTHENTICATED, "token is signed by an unknown key"
            )
        return found

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        keys = self._keys or {}
        if kid is None:
            return next(iter(keys.values())) if len(keys) == 1 else None
        return keys.get(kid)

    async def _refresh(self, seen: float) -> None:
        """Fetches the keys, unless another task did since `seen`."""
        async with self._lock:
            if self._fetched_at != seen:
                return
            self._fetched_at = self._clock()
            try:
                document = await asyncio.to_thread(self._read)
                self._keys = _parse(document)
            except (OSError, ValueError, jwt.PyJWTError) as error:
                # A source that failed is tried again after min_refresh_s, not per call.
                logger.bind(source=str(self._source), error=repr(error)).warning(
                    "cannot fetch the JWKS; keeping the keys held"
                )
        if self._keys is None:
            raise MeshError(
                errors_pb2.ERROR_REASON_AUTH_UNAVAILABLE,
                "the identity provider's signing keys cannot be fetched; retry later",
                retry_after=max(self._min_refresh_s, 1.0),
            )

    def _read(self) -> bytes:
        if isinstance(self._source, Path):
            return self._source.read_bytes()
        request = urllib.request.Request(self._source, headers={"Accept": "application/json"})  # noqa: S310 - the scheme is checked in __init__
        with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
            body: bytes = response.read(_MAX_DOCUMENT_BYTES + 1)
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ValueError("the JWKS document is larger than 1 MiB")
        return body


def _parse(document: bytes) -> dict[str, jwt.PyJWK]:
    """Reads the signing keys of a JWKS document by `kid`.

    Keys meant for encryption, of an algorithm outside `ALGORITHMS`, or without a `kid`
    (unless alone) are left out.

    Raises:
        ValueError: The document is not a JWKS.
    """
    data = json.loads(document)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("a JWKS document is an object with a 'keys' array")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue  # a key type this process cannot use; the others still serve
        if key.algorithm_name in ALGORITHMS:
            keys[str(entry.get("kid", ""))] = key
    if "" in keys and len(keys) > 1:
        del keys[""]
    return keys
