"""Where the database is (external or embedded) and the connection pool to it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import asyncpg

from meeting_service.db.embedded import EmbeddedPostgres
from meeting_service.db.migrate import apply_migrations
from meeting_service.settings import MeetingServiceSettings
from mesh_common.logging import redact

# asyncpg and the OS report a lost or refused database in many ways; they all mean "the
# backend is unavailable", never a bug in the request: refused or reset connections,
# timeouts, a server starting or shutting down, "too many connections" (53300), and a
# server that refuses who we are or where we ask to go (class 28, 3D000), which an
# operator fixes without restarting this service. Every caller (health, calls, the LISTEN
# hub, the job workers) treats them alike: wait, retry, answer UNAVAILABLE meanwhile.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.DatabaseDroppedError,
    asyncpg.IdleSessionTimeoutError,
)


@dataclass
class Database:
    """The service's PostgreSQL: its DSN, the embedded server when there is one, the pool.

    Attributes:
        dsn: Where to connect.
        embedded: The embedded server this process started, if any.
        pool: The pool, once `open()` succeeded.
        connection_class: The class of the pool's connections (the service's tracing one).
        query_timeout_s: Longest a query on the pool may take (`db_query_timeout_s`);
            then asyncpg cancels it, raises TimeoutError (a lost database, as every
            `CONNECTION_ERRORS`) and drops the connection unless the server acknowledges
            the cancel within as long again.
        connect_timeout_s: Longest a new connection may take (`db_connect_timeout_s`).
    """

    dsn: str
    embedded: EmbeddedPostgres | None = None
    pool_min: int = 2
    pool_max: int = 10
    pool: asyncpg.Pool | None = field(default=None, init=False)
    connection_class: type[asyncpg.Connection] = field(default=asyncpg.Connection, init=False)
    query_timeout_s: float = field(default=15.0, init=False)
    connect_timeout_s: float = field(default=10.0, init=False)

    @property
    def where(self) -> str:
        """The DSN with its password masked, for log lines."""
        return redact(self.dsn)

    @classmethod
    async def from_settings(cls, settings: MeetingServiceSettings) -> Database:
        """Resolves the database: `DATABASE_URL`, or the embedded server (started here).

        Args:
            settings: The service settings.

        Returns:
            The database, not yet connected.

        Raises:
            EmbeddedPostgresError: The embedded server would not start.
        """
        if settings.database_url is not None:
            return cls(
                settings.database_url.get_secret_value(),
                pool_min=settings.db_pool_min,
                pool_max=settings.db_pool_max,
            )
        embedded = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
        dsn = await embedded.start()
        return cls(
            dsn, embedded=embedded, pool_min=settings.db_pool_min, pool_max=settings.db_pool_max
        )

    async def open(self) -> asyncpg.Pool:
        """Connects the pool and applies the migrations the database lacks.

        Returns:
            The pool.

        Raises:
            OSError, asyncpg.PostgresError: The database is unreachable or refused.
            MigrationError: The schema and this code disagree.
        """
        if self.pool is None:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min,
                max_size=self.pool_max,
                timeout=self.connect_timeout_s,
                command_timeout=self.query_timeout_s,
                connection_class=self.connection_class,
                reset=_keep_session,
            )
            try:
                # Its own connection, with no query timeout: a migration may rewrite a
                # large table, or wait for another replica's.
                connection = await asyncpg.connect(
                    self.dsn,
                    timeout=self.connect_timeout_s,
                    connection_class=self.connection_class,
                )
                try:
                    await apply_migrations(connection)
                finally:
                    await connection.close(timeout=self.connect_timeout_s)
            except BaseException:
                await pool.close()
                raise
            self.pool = pool
        return self.pool

    async def ping(self, within: float = 2.0) -> bool:
        """Tells whether the database answers a trivial query within `within` seconds."""
        if self.pool is None:
            return False
        try:
            async with self.pool.acquire(timeout=within) as connection:
                await round_trip(connection, within)
        except CONNECTION_ERRORS:
            return False
        return True

    async def close(self) -> None:
        """Closes the pool and stops the embedded server, if this process started it."""
        if self.pool is not None:
            pool, self.pool = self.pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except TimeoutError:
                # A connection still checked out (a call that outlived the grace period)
                # must not keep the process from exiting.
                pool.terminate()
        if self.embedded is not None:
            await self.embedded.stop()


async def round_trip(connection: asyncpg.Connection, within: float) -> None:
    """Makes the server answer a trivial query: a peer that vanished is only found by talking.

    Raises:
        OSError, asyncpg.PostgresError, TimeoutError: It did not answer within `within` s.
    """
    await connection.fetchval("SELECT 1", timeout=within)


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """Returns a connection to the pool as it is (asyncpg still rolls back a transaction).

    asyncpg's default reset is a round trip per release (`RESET ALL; UNLISTEN *; CLOSE
    ALL; pg_advisory_unlock_all()`), a twentieth of meeting_service's CPU per GetMeeting.
    Nothing here leaves session state on a pooled connection: settings are `SET LOCAL`,
    locks are transaction-level, cursors live in transactions, and LISTEN has a
    connection of its own (`EventHub`). Keep it that way.
    """
