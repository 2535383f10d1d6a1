"""`meeting-mesh migrate`: apply the database migrations and exit."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from meeting_service.db.database import CONNECTION_ERRORS, Database
from meeting_service.db.migrate import MigrationError, apply_migrations
from meeting_service.settings import MeetingServiceSettings
from mesh_common.logging import configure_logging
from mesh_common.settings import SettingsError, load


def configure(parser: argparse.ArgumentParser) -> None:
    """Adds this subcommand's arguments (none: `DATABASE_URL` says where)."""


def run(args: argparse.Namespace) -> int:
    """Applies what is missing and prints what it did.

    Returns:
        0 on success, 1 when the database is unreachable or the migrations disagree with
        it, 2 for invalid settings.
    """
    try:
        settings = load(MeetingServiceSettings)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging("migrate", settings.log_level, settings.log_format)
    try:
        applied = asyncio.run(_migrate(settings))
    except (MigrationError, *CONNECTION_ERRORS, asyncpg.PostgresError) as error:
        print(f"migrate: {error}", file=sys.stderr)
        return 1
    if applied:
        print("applied: " + ", ".join(applied))
    else:
        print("the database is up to date")
    return 0


async def _migrate(settings: MeetingServiceSettings) -> list[str]:
    database = await Database.from_settings(settings)
    try:
        connection = await asyncpg.connect(database.dsn, timeout=10)
        try:
            return await apply_migrations(connection)
        finally:
            await connection.close()
    finally:
        await database.close()
