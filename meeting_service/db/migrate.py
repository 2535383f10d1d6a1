"""Forward-only SQL migrations: files `migrations/NNNN_name.sql`, applied in order.

The pending files run in one transaction (each in a savepoint) and are recorded in
`schema_migrations` with their checksums. A transaction-level advisory lock serialises
concurrent runners (two replicas starting together): the second waits, then finds the work
done; a crash leaves nothing half-applied. An applied file whose
contents changed is an error, never silently re-run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from mesh_common.logging import logger

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any fixed 64-bit key; it names "meeting-mesh schema migrations" for pg_locks readers.
_LOCK_KEY = 0x6D65657469_6E67
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    """The migrations on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    """One migration file.

    Attributes:
        version: The number in the file name.
        name: The file name.
        sql: The statements.
    """

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the statements."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Reads the migration files in version order.

    Args:
        directory: Where the `NNNN_name.sql` files are.

    Returns:
        The migrations, lowest version first.

    Raises:
        MigrationError: A file is misnamed or two files share a version.
    """
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"migration file name must be NNNN_name.sql: {path.name}")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations with version {version}")
        found[version] = Migration(version, path.name, path.read_text())
    return [found[v] for v in sorted(found)]


async def apply_migrations(
    connection: asyncpg.Connection, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Applies the migrations the database lacks.

    Args:
        connection: A connection (not in a transaction).
        directory: Where the migration files are.

    Returns:
        The names of the migrations applied by this call (empty when up to date).

    Raises:
        MigrationError: An applied migration's file changed, or the database has a
            migration this code does not know (it is older than the schema).
    """
    migrations = discover(directory)
    applied_now: list[str] = []
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await connection.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {row["version"]: row for row in rows}
        known = {m.version for m in migrations}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise MigrationError(
                f"the database has migrations this code does not know: {unknown}; "
                "run a newer version"
            )
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(f"applied migration {migration.name} was edited")
                continue
            # A savepoint per file keeps the error message pointed at the file that failed.
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration.name)
            logger.bind(migration=migration.name).info("migration applied")
    return applied_now
