"""Structured logs for every service, through Loguru, with secrets masked.

One JSON object per line on stdout (timestamp, level, service, message and any bound
fields), or a readable line when stdout is a terminal. The standard library's `logging`
(grpc, asyncio, aiohttp) is routed into the same sink so nothing prints in another format.
Inside a span, every line carries `trace_id` and `span_id`.

No credential reaches a sink: every Loguru record (message, bound fields, exception text)
and every standard-library record (message, traceback, stack) passes through `redact`
when it is made, before any handler sees it. Exceptions are rendered to text there, so no
sink can print a frame's local variables.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from typing import TYPE_CHECKING, Any

from loguru import logger
from opentelemetry import trace

if TYPE_CHECKING:
    from types import TracebackType

    from loguru import Message, Record

__all__ = ["MASK", "LoggedTraceback", "configure_logging", "logger", "redact"]

_SERVICE: dict[str, str] = {"name": "meeting-mesh"}

MASK = "***"

# What a credential looks like in a log line, one row per kind: a literal every match holds
# (lowercase, so lines without any are skipped with a cheap substring test), the text kept
# before the secret (a regex), and the secret itself (a regex). To mask a new kind of key,
# add a row.
_SECRET_KINDS: tuple[tuple[str, str, str], ...] = (
    # Header values, raw ("Authorization: Basic ...") or in a repr ("'authorization', '...'").
    (
        "authorization",
        r"(?i:authorization)[\"']?\s*(?:[:=]|[\"']?\s*,)\s*[\"']?",
        r"[^\"'\r\n]+",
    ),
    ("bearer", r"(?i:\bbearer)\s+", r"[^\s\"',;]+"),
    ("access_token", r"(?i:\baccess_token)[\"']?\s*[:=]\s*[\"']?", r"[^\s&\"'#]+"),
    # JWTs: three base64url segments; a control character inside shows as "\x01" in a repr.
    ("eyj", "", r"\beyJ[\w-]*\.[\w-]+\.(?:[\w-]|\\x[0-9a-fA-F]{2})*"),
    # API keys and webhook signing secrets, by their prefix.
    ("mm_", r"\bmm_", r"[\w-]{20,}"),
    ("whsec_", r"\bwhsec_", r"[\w+/=-]{16,}"),
    # The password of a URL's user info ("postgresql://user:***@host").
    ("://", r"://[^\s:/?#@\"']*:", r"[^\s@/?#\"']+(?=@)"),
)
_MARKERS = tuple(marker for marker, _, _ in _SECRET_KINDS)
# Each alternative captures only what it keeps, so `lastindex` names the kind that matched.
_SECRETS = re.compile("|".join(f"({kept}){secret}" for _, kept, secret in _SECRET_KINDS), re.ASCII)


def _mask(match: re.Match[str]) -> str:
    return f"{match.group(match.lastindex or 0)}{MASK}"


def redact(text: str) -> str:
    """Masks every credential in a text.

    Authorization header values, bearer tokens, JWTs, `access_token=` values, API keys,
    webhook secrets and URL passwords become `***`; what names them stays
    (`Authorization: ***`, `postgresql://user:***@host`).

    Args:
        text: A log message, field or traceback.

    Returns:
        The text with its secrets masked; `text` itself when it holds none.
    """
    lowered = text.lower()
    # A plain loop: `any()` over a generator costs twice as much per text, on every
    # field of every log line.
    for marker in _MARKERS:
        if marker in lowered:
            return _SECRETS.sub(_mask, text)
    return text


class LoggedTraceback(Exception):
    """An exception's traceback, rendered and redacted, in the exception's place on a record.

    Sinks print it as they would the exception; it has no frames, so no sink can show the
    local variables of the frames where the exception passed.
    """


def _redacted_traceback(
    kind: type[BaseException] | None, error: BaseException, frames: TracebackType | None
) -> str:
    return redact("".join(traceback.format_exception(kind, error, frames)))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    redacted = redact(text)
    return value if redacted is text else redacted


def _redact_record(record: Record) -> None:
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for key, value in extra.items():
        extra[key] = _redact_value(value)
    exception = record["exception"]
    if exception is not None:
        kind, error, frames = exception
        if error is not None and not isinstance(error, LoggedTraceback):
            text = _redacted_traceback(kind, error, frames)
            record["exception"] = exception._replace(value=LoggedTraceback(text), traceback=None)


def _add_trace_context(record: Record) -> None:
    """Puts the current span's ids on the record, so a log line finds its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        record["extra"]["trace_id"] = format(context.trace_id, "032x")
        record["extra"]["span_id"] = format(context.span_id, "016x")


def _patch(record: Record) -> None:
    _redact_record(record)
    _add_trace_context(record)


_make_stdlib_record = logging.getLogRecordFactory()


def _redacted_stdlib_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Makes a standard-library record with its message, traceback and stack redacted."""
    record = _make_stdlib_record(*args, **kwargs)
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it; it must not print the args
        record.msg, record.args = redact(f"{record.msg} {record.args!r}"), ()
    else:
        redacted = redact(message)
        if redacted is not message:
            record.msg, record.args = redacted, ()
    if record.exc_info and record.exc_info[1] is not None:
        # Formatters print `exc_text` when set, rather than formatting `exc_info` again.
        record.exc_text = _redacted_traceback(*record.exc_info).rstrip("\n")
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


# Installed at import, not only by configure_logging, so in-process servers (tests, bench)
# get trace ids on their lines and no secret in them.
logger.configure(patcher=_patch)
logging.setLogRecordFactory(_redacted_stdlib_record)


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
        line["exception"] = str(record["exception"].value)
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()


class _InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Sends every log line of this process to stdout in one format.

    Args:
        service: The service name put on every line.
        level: Minimum level.
        fmt: "json", "text", or "auto" (text when stdout is a terminal).
    """
    _SERVICE["name"] = service
    logger.remove()
    logger.configure(extra={"service": service}, patcher=_patch)
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
