"""SIGTERM stops a bench run as Ctrl-C does, its cleanup included.

A run starts processes of its own (services, PostgreSQL, SeaweedFS), each in its own
process group. asyncio.run turns Ctrl-C into a cancellation of the main task, so every
`finally` stops them; SIGTERM (a CI job's timeout, `kill`) would end the process at once
and leave them running.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any

STOPPED = (KeyboardInterrupt, asyncio.CancelledError)
"""What asyncio.run raises for a run stopped by Ctrl-C or SIGTERM (exit status 130)."""


async def stoppable[T](run: Coroutine[Any, Any, T]) -> T:
    """Runs `run` in the main task, which SIGTERM cancels as Ctrl-C does."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run
