"""Fixtures shared by every suite: a real PostgreSQL, a real S3 server and a running
meeting_service.

See `tests/support/postgres.py` and `tests/support/meeting.py` for what each provides.
"""

from tests.support.meeting import meeting_service, meeting_stub
from tests.support.postgres import database_url, postgres_admin_dsn
from tests.support.s3 import s3_bucket, s3_server

__all__ = [
    "database_url",
    "meeting_service",
    "meeting_stub",
    "postgres_admin_dsn",
    "s3_bucket",
    "s3_server",
]
