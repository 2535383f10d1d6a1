"""A pytest plugin that fails any test during which a secret reached a log line.

Loaded by `tests/conftest.py`. From the start of the session it captures every line the
process logs, through Loguru (all levels from DEBUG, message, bound fields and exception)
and through the standard library's root logger (aiohttp, grpc, asyncio), and reads what
pytest captured of each test's stdout, stderr and log records (which holds the output of
subprocesses that write to the test's own stdout and stderr). After each phase of each test
(setup, call, teardown) it scans what arrived during it with `tests.support.secrets.leaks_in`
and turns a passing phase into a failure naming the leak. Lines logged after the last test
fail the session.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import pytest

from mesh_common.logging import logger
from tests.support.secrets import leaks_in

if TYPE_CHECKING:
    from loguru import Message


class LogCapture:
    """Every log line of the process since `install`, until taken."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._sink_id: int | None = None
        self._handler = _ListHandler(self._append)
        self._handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def install(self) -> None:
        """Adds the Loguru sink and the root handler, afresh: something may have taken them
        away (`configure_logging` replaces both)."""
        self.uninstall()
        self._sink_id = logger.add(self._loguru_line, level="DEBUG", format="{message}")
        logging.root.addHandler(self._handler)

    def uninstall(self) -> None:
        """Removes the sink and the handler (either may be gone already)."""
        if self._sink_id is not None:
            with contextlib.suppress(ValueError):
                logger.remove(self._sink_id)
            self._sink_id = None
        logging.root.removeHandler(self._handler)

    def take(self) -> str:
        """Returns the lines captured since the last call, and forgets them."""
        with self._lock:
            lines, self._lines = self._lines, []
        return "\n".join(lines)

    def _append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def _loguru_line(self, message: Message) -> None:
        # The formatted message holds the exception; the bound fields are printed as a
        # JSON sink would print them.
        self._append(f"{message} {message.record['extra']!r}")


class _ListHandler(logging.Handler):
    def __init__(self, append: Callable[[str], None]) -> None:
        super().__init__(logging.NOTSET)
        self._append_line = append

    def emit(self, record: logging.LogRecord) -> None:
        self._append_line(self.format(record))


_CAPTURE = LogCapture()


def pytest_sessionstart(session: pytest.Session) -> None:
    _CAPTURE.install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    captured = [
        content
        for title, content in report.sections
        if title.startswith("Captured") and title.endswith(f" {report.when}")
    ]
    leaks = leaks_in("\n".join([_CAPTURE.take(), *captured]))
    _CAPTURE.install()
    if leaks:
        text = "a secret reached a log line or captured output:\n" + "\n".join(
            f"  {leak}" for leak in leaks
        )
        if report.passed:
            report.outcome = "failed"
            report.longrepr = text
        else:
            report.sections.append(("secret leak", text))
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = leaks_in(_CAPTURE.take())
    _CAPTURE.uninstall()
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("a secret reached a log line after the last test:", red=True)
            for leak in leaks:
                reporter.write_line(f"  {leak}", red=True)
