"""What this process logs during a block, through Loguru and the standard library alike.

    with captured_logs() as logs:
        ...  # exercise a path
    logs.assert_clean()  # no ERROR, no traceback

`assert_clean` is how a test says "this path is normal use": an operator alerts on ERROR, so
a normal path must not log one. `wait_for` waits for a line (a start-up that cannot
connect says why at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mesh_common.logging import logger

if TYPE_CHECKING:
    from loguru import Message

_ERROR = logging.ERROR


@dataclass(frozen=True)
class LogLine:
    """One logged line.

    Attributes:
        level: Its level number (`logging.WARNING`, ...).
        source: The logger's name (a module for Loguru, e.g. "asyncio" for stdlib).
        text: The message, its bound fields and its traceback, as a sink prints them.
        traceback: Whether it carries an exception's traceback.
    """

    level: int
    source: str
    text: str
    traceback: bool

    def __str__(self) -> str:
        return f"{logging.getLevelName(self.level)} {self.source}: {self.text}"


class CapturedLogs:
    """The lines logged since the block began."""

    def __init__(self) -> None:
        self._lines: list[LogLine] = []
        self._lock = threading.Lock()

    @property
    def lines(self) -> list[LogLine]:
        """Every line so far."""
        with self._lock:
            return list(self._lines)

    def add(self, line: LogLine) -> None:
        """Records a line (called by the sinks)."""
        with self._lock:
            self._lines.append(line)

    def matching(self, predicate: Callable[[LogLine], bool]) -> list[LogLine]:
        """The lines `predicate` accepts."""
        return [line for line in self.lines if predicate(line)]

    def errors(self) -> list[LogLine]:
        """Lines at ERROR or above (what an operator alerts on)."""
        return self.matching(lambda line: line.level >= _ERROR)

    def problems(self) -> list[LogLine]:
        """Lines at ERROR or above, and lines with a traceback at any level."""
        return self.matching(lambda line: line.level >= _ERROR or line.traceback)

    def assert_clean(self) -> None:
        """Fails when anything was logged at ERROR or with a traceback.

        Collects garbage first, so a task destroyed while pending ("Task was destroyed but
        it is pending") is reported here rather than in a later test.
        """
        gc.collect()
        problems = self.problems()
        assert not problems, "logged at ERROR or with a traceback:\n" + "\n".join(
            str(line) for line in problems
        )

    async def wait_for(self, predicate: Callable[[LogLine], bool], within: float) -> LogLine:
        """Waits for a line `predicate` accepts.

        Raises:
            TimeoutError: None came within `within` seconds.
        """
        async with asyncio.timeout(within):
            while True:
                found = self.matching(predicate)
                if found:
                    return found[0]
                await asyncio.sleep(0.05)


class _Handler(logging.Handler):
    def __init__(self, logs: CapturedLogs) -> None:
        super().__init__(logging.NOTSET)
        self._logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
        self._logs.add(LogLine(record.levelno, record.name, text, record.exc_info is not None))


@contextlib.contextmanager
def captured_logs() -> Iterator[CapturedLogs]:
    """Captures every Loguru and standard-library line logged in the block.

    Standard-library loggers below WARNING are not lowered: what they would drop at their
    own level is not a line an operator sees.
    """
    logs = CapturedLogs()

    def loguru_sink(message: Message) -> None:
        record = message.record
        exception = record["exception"]
        text = f"{record['message']} {record['extra']!r}"
        if exception is not None:
            text = f"{text}\n{exception.value}"
        logs.add(LogLine(record["level"].no, record["name"] or "", text, exception is not None))

    sink = logger.add(loguru_sink, level="DEBUG", format="{message}")
    handler = _Handler(logs)
    logging.root.addHandler(handler)
    try:
        yield logs
    finally:
        logging.root.removeHandler(handler)
        with contextlib.suppress(ValueError):
            logger.remove(sink)
