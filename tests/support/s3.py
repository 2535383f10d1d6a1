"""A real S3 server for tests: one SeaweedFS per session, a fresh bucket per module.

Fixtures (exposed by `tests/conftest.py`):

- `s3_server`: the session's `SeaweedFS` (`weed mini` on loopback).
- `s3_bucket`: the name of an empty bucket of this module's own.

`s3_settings(server, bucket)` gives the meeting service's settings for it;
`s3_behind_a_proxy(server, bucket)` the same through a fault proxy in front of it.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest_asyncio
from pydantic import SecretStr

from meeting_mesh import seaweedfs
from meeting_mesh.seaweedfs import SeaweedFS
from tests.support.fault_proxy import FaultProxy


def s3_settings(server: SeaweedFS, bucket: str) -> dict[str, Any]:
    """MeetingServiceSettings fields storing recordings in `bucket` of `server`."""
    return {
        "storage": "s3",
        "s3_endpoint": server.endpoint,
        "s3_bucket": bucket,
        "s3_path_style": True,
        "s3_access_key_id": server.access_key_id,
        "s3_secret_access_key": SecretStr(server.secret_access_key),
        "s3_part_bytes": 5 * 1024 * 1024,
    }


@asynccontextmanager
async def s3_behind_a_proxy(
    server: SeaweedFS, bucket: str
) -> AsyncIterator[tuple[FaultProxy, dict[str, Any]]]:
    """A fault proxy in front of `server`, and `s3_settings` that go through it."""
    s3 = urlsplit(server.endpoint)
    assert s3.hostname is not None and s3.port is not None
    async with FaultProxy(s3.hostname, s3.port) as proxy:
        yield proxy, {**s3_settings(server, bucket), "s3_endpoint": f"http://{proxy.address}"}


@pytest_asyncio.fixture(scope="session")
async def s3_server() -> AsyncIterator[SeaweedFS]:
    """The session's SeaweedFS S3 server."""
    directory = Path(tempfile.mkdtemp(prefix="mesh-test-s3-"))
    try:
        async with seaweedfs.running(directory, "mesh-test") as server:
            yield server
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(scope="module")
async def s3_bucket(s3_server: SeaweedFS) -> str:
    """An empty bucket for this module."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    await seaweedfs.create_bucket(s3_server, bucket)
    return bucket
