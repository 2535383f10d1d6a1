"""Structured logs for every service, through Loguru.

One JSON object per line on stdout (timestamp, level, service, message and any bound
fields), or a readable line when stdout is a terminal. The standard library's `logging`
(grpc, asyncio, aiohttp) is routed into the same sink so nothing prints in another format.
Inside a span, every line carries `trace_id` and `span_id`.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from loguru import logger
from opentelemetry import trace

if TYPE_CHECKING:
    from loguru import Message, Record

__all__ = ["configure_logging", "logger"]

_SERVICE: dict[str, str] = {"name": "meeting-mesh"}


def _json_sink(message: Message) -> None:
    record: Record = message.record
    line: dict[str, Any] = {
        "timestamp": record["time"].isoformat(),
        "level": record["level"].name,
        "service": record["extra"].get("service", _SERVICE["name"]),
        "message": record["message"],
        "logger": record["name"],
    }
    for key, value in record["extra"].items():
        if key != "service":
            line[key] = value
    if record["exception"] is not None:
        line["exception"] = "".join(__import__("traceback").format_exception(*record["exception"]))
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def _add_trace_context(record: Record) -> None:
    """Puts the current span's ids on the record, so a log line finds its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        record["extra"]["trace_id"] = format(context.trace_id, "032x")
        record["extra"]["span_id"] = format(context.span_id, "016x")


# Installed at import, not only by configure_logging, so in-process servers (tests, bench)
# get trace ids on their lines too.
logger.configure(patcher=_add_trace_context)


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Sends every log line of this process to stdout in one format.

    Args:
        service: The service name put on every line.
        level: Minimum level.
        fmt: "json", "text", or "auto" (text when stdout is a terminal).
    """
    _SERVICE["name"] = service
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_add_trace_context)
    use_text = fmt == "text" or (fmt == "auto" and sys.stdout.isatty())
    if use_text:
        logger.add(
            sys.stdout,
            level=level,
            format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
            "<cyan>{extra[service]}</cyan> {message}",
        )
    else:
        logger.add(_json_sink, level=level)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
