"""Fixtures shared by every suite: a real PostgreSQL, a real S3 server and a running
meeting_service.

See `tests/support/postgres.py` and `tests/support/meeting.py` for what each provides.
Every test also runs under `tests/support/leak_check.py`, which fails it when a secret the
suite minted (or anything shaped like a credential) reaches a log line.
"""

from tests.support.meeting import meeting_service, meeting_stub
from tests.support.postgres import database_url, postgres_admin_dsn
from tests.support.s3 import s3_bucket, s3_server

pytest_plugins = ["pytester", "tests.support.leak_check"]

__all__ = [
    "database_url",
    "meeting_service",
    "meeting_stub",
    "postgres_admin_dsn",
    "s3_bucket",
    "s3_server",
]
