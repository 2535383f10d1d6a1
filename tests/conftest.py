"""Fixtures shared by every suite: a real PostgreSQL and a running meeting_service.

See `tests/support/postgres.py` and `tests/support/meeting.py` for what each provides.
"""

from tests.support.meeting import meeting_service, meeting_stub
from tests.support.postgres import database_url, postgres_admin_dsn

__all__ = ["database_url", "meeting_service", "meeting_stub", "postgres_admin_dsn"]
