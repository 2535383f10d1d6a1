"""A real PostgreSQL for tests: one embedded server per session, a fresh database per module.

Usage from any suite (the fixtures are exposed by `tests/conftest.py`):

    async def test_something(database_url: str) -> None: ...

`database_url` is a DSN to an empty database of its own (migrations not applied; the
service applies them on start). Set `MESH_TEST_DATABASE_URL` to run the suites against an
external server instead: each module then gets a fresh database on it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest_asyncio

from meeting_service.db.embedded import EmbeddedPostgres
from tests.support.fault_proxy import FaultProxy


@contextlib.asynccontextmanager
async def behind_fault_proxy(dsn: str) -> AsyncIterator[tuple[str, FaultProxy]]:
    """A FaultProxy in front of the DSN's server, and the DSN that dials through it."""
    host_port = dsn.split("@", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    async with FaultProxy(host, int(port)) as proxy:
        yield dsn.replace(host_port, proxy.address), proxy


async def create_database(admin_dsn: str, prefix: str = "test") -> str:
    """Creates an empty database and returns its DSN.

    Args:
        admin_dsn: DSN of a database on the server, as a role that may create databases.
        prefix: Start of the database name.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return _with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, dsn: str) -> None:
    """Drops a database made by `create_database`, ending its sessions first."""
    name = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _with_database(dsn: str, name: str) -> str:
    base, _, query = dsn.partition("?")
    base = base.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


async def start_throwaway_server(directory: Path, port: int = 0) -> EmbeddedPostgres:
    """Starts an embedded server for tests (no fsync) in `directory`.

    Keep `directory` out of pytest's tmp_path (see `postgres_admin_dsn`).
    """
    server = EmbeddedPostgres(directory, port=port, durable=False)
    await server.start()
    return server


@pytest_asyncio.fixture(scope="session")
async def postgres_admin_dsn() -> AsyncIterator[str]:
    """DSN of the session's PostgreSQL server (its `postgres` database)."""
    external = os.environ.get("MESH_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's tmp_path: as root the server runs as another user, and every
    # pytest session resets /tmp/pytest-of-root to 0700, cutting a running server off its
    # files whenever a parallel session starts.
    directory = Path(tempfile.mkdtemp(prefix="mesh-test-pg-"))
    server = await start_throwaway_server(directory / "postgres")
    try:
        yield server.dsn()
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest_asyncio.fixture(scope="module")
async def database_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """DSN of a fresh, empty database for this test module, dropped afterwards."""
    dsn = await create_database(postgres_admin_dsn)
    try:
        yield dsn
    finally:
        await drop_database(postgres_admin_dsn, dsn)
