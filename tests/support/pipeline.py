"""A meeting_service with its pipeline in front of gpu_proxy and a mock-engine gpu_node.

async with run_pipeline_service(database_url, tmp_path_factory) as meeting_service: ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.gpu import make_pki, node_settings, proxy_settings
from tests.support.meeting import pipeline_settings


@contextlib.asynccontextmanager
async def run_pipeline_service(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, **overrides: Any
) -> AsyncIterator[RunningMeetingService]:
    """Runs gpu_node (mock engine), gpu_proxy and meeting_service with one job worker.

    Args:
        database_url: The database.
        tmp_path_factory: For the certificates and the service's data directory.
        **overrides: meeting_service settings.

    Yields:
        The ready meeting_service.
    """
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(run_gpu_node(node_settings(pki)))
        proxy = await stack.enter_async_context(run_gpu_proxy(proxy_settings(pki, [node.address])))
        settings = pipeline_settings(
            database_url,
            tmp_path_factory.mktemp("meeting-service"),
            pki,
            proxy.address,
            **overrides,
        )
        yield await stack.enter_async_context(
            run_meeting_service(settings, database=Database(database_url))
        )
