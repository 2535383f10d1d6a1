"""A running meeting_service for tests, bearer tokens, and authenticated stubs.

Fixtures (exposed by `tests/conftest.py`):

- `meeting_service`: a `RunningMeetingService` on 127.0.0.1 (port 0) over the module's
  fresh database, ready (migrated) before the first test; stopped after the module.
- `meeting_stub`: a `MeetingServiceStub` on a channel to it.

Helpers: `make_token(user)`, `auth(user)` (call metadata), `TEST_JWT_SECRET`,
`meeting_settings(...)`, `pipeline_settings(...)` (with a gpu_proxy to call).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from pydantic import SecretStr

from gen.meeting.v1 import meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from meeting_service.settings import MeetingServiceSettings
from mesh_common.auth import issue_token
from tests.support.gpu import Pki
from tests.support.secrets import register_secret

TEST_JWT_SECRET = register_secret("test-secret-not-for-production-0123456789abcdef")


def make_token(user: str, *, ttl_s: int = 3600, secret: str = TEST_JWT_SECRET) -> str:
    """A bearer token for `user` that the test services accept (negative TTL: expired).

    The token is registered with the leak check, which fails a test that logs it.
    """
    return register_secret(issue_token(user, secret, ttl_s=ttl_s))


def auth(user: str, **token_args: Any) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying a bearer token for `user`."""
    return (("authorization", f"Bearer {make_token(user, **token_args)}"),)


def meeting_settings(database_url: str, data_dir: Path, **overrides: Any) -> MeetingServiceSettings:
    """Settings for an in-process meeting_service on a free port.

    Args:
        database_url: The database.
        data_dir: A scratch directory.
        **overrides: Any other settings field.
    """
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "jwt_secret": SecretStr(TEST_JWT_SECRET),
        "meeting_port": 0,
        "meeting_metrics_port": 0,
        "data_dir": data_dir,
        "grace_s": 2.0,
        "health_interval_s": 0.5,
        "db_pool_min": 1,
        "db_pool_max": 8,
    }
    values.update(overrides)
    return MeetingServiceSettings(**values)


def pipeline_settings(
    database_url: str, data_dir: Path, pki: Pki, proxy_target: str, **overrides: Any
) -> MeetingServiceSettings:
    """Settings for a meeting_service whose pipeline calls the gpu_proxy at `proxy_target`.

    One worker that looks for jobs every 50 ms, with the run's client certificate.

    Args:
        database_url: The database.
        data_dir: A scratch directory.
        pki: The run's certificates.
        proxy_target: gpu_proxy's "host:port".
        **overrides: Any other settings field.
    """
    values: dict[str, Any] = {
        "gpu_proxy_target": proxy_target,
        "gpu_proxy_cert": pki.client.cert,
        "gpu_proxy_key": pki.client.key,
        "gpu_proxy_ca": pki.ca.cert,
        "pipeline_workers": 1,
        "pipeline_poll_interval_s": 0.05,
    }
    return meeting_settings(database_url, data_dir, **{**values, **overrides})


def grpc_target(running: RunningMeetingService) -> str:
    """The address to dial."""
    return running.address


@pytest_asyncio.fixture(scope="module")
async def meeting_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """A ready meeting_service over the module's database."""
    settings = meeting_settings(database_url, tmp_path_factory.mktemp("meeting-service"))
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def meeting_stub(
    meeting_service: RunningMeetingService,
) -> AsyncIterator[meeting_service_pb2_grpc.MeetingServiceStub]:
    """A stub on a channel to `meeting_service` (pass `metadata=auth(user)` per call)."""
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        yield meeting_service_pb2_grpc.MeetingServiceStub(channel)


def error_reason(error: grpc.aio.AioRpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The code, `ErrorInfo.reason` and `ErrorInfo.metadata` of a failed call."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return error.code(), info.reason, dict(info.metadata)
    return error.code(), "", {}
