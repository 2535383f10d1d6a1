"""What every scenario of one run shares: a scratch directory, PostgreSQL, certificates,
the signing secret, and helpers to start the services under test.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench.processes import ServiceProcess, service
from meeting_service.db.embedded import EmbeddedPostgres
from mesh_common.auth import issue_token
from mesh_common.tls import create_ca, issue_certificate


@dataclass
class BenchContext:
    """Shared state of a run.

    Attributes:
        workdir: Scratch directory (logs, certificates, PostgreSQL), removed after the run.
        quick: Short versions of every scenario.
        postgres: The run's PostgreSQL (started lazily, durable: fsync on, as deployed).
        jwt_secret: The HS256 secret every service of this run verifies.
    """

    workdir: Path
    quick: bool
    postgres: EmbeddedPostgres | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    _pki: Path | None = None

    def token(self, user: str = "bench") -> str:
        """A bearer token for `user`, valid for the run."""
        return issue_token(user, self.jwt_secret, ttl_s=3 * 3600)

    def authorization(self, user: str = "bench") -> str:
        """The `Authorization` header value for `user`."""
        return f"Bearer {self.token(user)}"

    async def new_database(self) -> str:
        """Creates an empty database on the run's PostgreSQL and returns its DSN."""
        if self.postgres is None:
            self.postgres = EmbeddedPostgres(self.workdir / "postgres")
            await self.postgres.start()
        name = f"bench_{uuid.uuid4().hex[:10]}"
        admin = await asyncpg.connect(self.postgres.dsn())
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        return self.postgres.dsn(name)

    def pki(self) -> Path:
        """A CA and the gpu-node, gpu-proxy and meeting-service certificates (made once)."""
        if self._pki is None:
            directory = self.workdir / "pki"
            ca = create_ca(directory)  # writes ca.pem, which every service trusts
            for name in ("gpu-node", "gpu-proxy", "meeting-service"):
                issue_certificate(ca, directory, name)
            self._pki = directory
        return self._pki

    def service(
        self, role: str, **config: object
    ) -> contextlib.AbstractAsyncContextManager[ServiceProcess]:
        """Runs a `bench.serve` role with this run's secret and scratch directory."""
        data_dir = self.workdir / "data" / role
        data_dir.mkdir(parents=True, exist_ok=True)
        full = {"jwt_secret": self.jwt_secret, "data_dir": str(data_dir), **config}
        return service(role, full, self.workdir / "logs")

    @contextlib.asynccontextmanager
    async def meeting_and_gateway(
        self, **meeting_config: object
    ) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess, str]]:
        """meeting_service over a fresh database, and the gateway in front of it.

        Yields:
            (meeting_service, gateway, database DSN).
        """
        dsn = await self.new_database()
        async with (
            self.service("meeting", database_url=dsn, **meeting_config) as meeting,
            self.service("gateway", meeting_target=meeting.address) as gateway,
        ):
            yield meeting, gateway, dsn

    async def close(self) -> None:
        """Stops PostgreSQL and removes the scratch directory."""
        if self.postgres is not None:
            await self.postgres.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def bench_context(quick: bool) -> AsyncIterator[BenchContext]:
    """A run's context, cleaned up afterwards.

    Not under pytest's or the user's directories: run as root, PostgreSQL runs as another
    user that must reach its files.
    """
    context = BenchContext(Path(tempfile.mkdtemp(prefix="mesh-bench-")), quick)
    try:
        yield context
    finally:
        await context.close()
