"""Fixtures of the processing suite: certificates and a database per test.

The mesh itself and the helpers are in tests/support/mesh.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.support.gpu import Pki, make_pki
from tests.support.postgres import create_database, drop_database


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pipeline-pki"))


@pytest_asyncio.fixture
async def db_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database per test: no job of one test is ever claimed in another."""
    dsn = await create_database(postgres_admin_dsn, "pipeline")
    try:
        yield dsn
    finally:
        await drop_database(postgres_admin_dsn, dsn)


# --- audio ---------------------------------------------------------------------------


# --- calls ---------------------------------------------------------------------------


# --- a recognizer that pauses, so a test can break things mid-job ---------------------
