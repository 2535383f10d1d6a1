"""A span per SQL statement, for the connections of one service's pool.

OpenTelemetry's asyncpg instrumentation patches `asyncpg.Connection` for the whole process
with one tracer; this pool-level connection class does the same for one pool with the
service's own tracer, so several services in one process (the test suite, the benchmarks)
each see their own statements, and nothing is patched globally.

A span carries the statement text, never its parameters: those hold user data and audio.
Only statements inside a span (a call, a job) are traced.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

# The methods every repository uses; transaction control (BEGIN/COMMIT) goes through the
# protocol directly and is seen as the time between statements.
_TRACED_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval")


def traced_connection_class(tracer: trace.Tracer) -> type[asyncpg.Connection]:
    """Returns a connection class that wraps each statement in a client span.

    Args:
        tracer: The service's tracer.

    Returns:
        A subclass of `asyncpg.Connection`, for `asyncpg.create_pool(connection_class=...)`.
    """

    def traced(name: str) -> Any:
        async def method(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            if not trace.get_current_span().get_span_context().is_valid:
                # Statements outside any request or job (health pings, idle polls for
                # jobs) would each be a trace of its own: noise, not answers.
                return await getattr(super(cls, self), name)(query, *args, **kwargs)
            operation = query.split(None, 1)[0].rstrip(";").upper() if query.strip() else "SQL"
            database = getattr(getattr(self, "_params", None), "database", "") or "postgresql"
            with tracer.start_as_current_span(
                f"{operation} {database}",
                kind=SpanKind.CLIENT,
                attributes={
                    "db.system": "postgresql",
                    "db.name": database,
                    "db.operation": operation,
                    "db.statement": query,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await getattr(super(cls, self), name)(query, *args, **kwargs)
                except Exception as error:
                    span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                    raise

        method.__name__ = name
        return method

    cls: type[asyncpg.Connection] = type(
        "TracedConnection",
        (asyncpg.Connection,),
        {name: traced(name) for name in _TRACED_METHODS},
    )
    return cls
