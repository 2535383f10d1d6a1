"""One call for many identical concurrent requests of the same answer.

When a thousand clients open a meeting's event stream at once with the same credentials,
each would check the meeting with its own GetMeeting: a thousand calls in flight for one
answer, and the memory of all of them at once. `SingleFlight` makes the first one's call
the answer of every request that arrives while it is in flight; a request after it makes
its own call, so no answer is kept beyond the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable


class SingleFlight[T]:
    """Shares the result (or the error) of an in-flight call among callers of the same key."""

    def __init__(self) -> None:
        self._flying: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Returns `call()`'s result, or that of the call already in flight for `key`.

        The call runs in a task of its own, so a caller that leaves (a client that
        disconnects) does not cancel it for the others.

        Args:
            key: What makes two requests the same (their target and their credentials).
            call: Makes the call.

        Returns:
            The call's result.

        Raises:
            Exception: The call's error, for every caller that shared it.
        """
        task = self._flying.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            self._flying[key] = task
            task.add_done_callback(lambda _: self._flying.pop(key, None))
        return await asyncio.shield(task)
