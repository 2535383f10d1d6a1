"""Request messages kept until the first response, so a failed stream can be replayed.

A streaming call can move to another node only if everything already sent to the first one
can be sent again. The buffer keeps each message as it is forwarded, until the first
response arrives (from then on the call is committed to its node) or until the kept bytes
pass a limit (from then on a failure cannot be retried and the caller retries the whole
job).

One task reads the caller's stream, at most `READ_AHEAD` messages ahead of the attempt
that forwards them: the next message is read from the caller while the previous one is
being written to the node, instead of one after the other, and gRPC flow control still
reaches the caller. The buffer never holds more than the limit, plus the messages read
ahead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

# Messages read from the caller before the attempt asks for them.
READ_AHEAD = 2


class Message(Protocol):
    """A request message as the proxy relays it: its serialized bytes (what is needed)."""

    def __len__(self) -> int:
        """Returns the serialized size."""
        ...


class _End:
    pass


_END = _End()


class _Failed:
    def __init__(self, error: Exception) -> None:
        self.error = error


class ReplayBuffer[M: Message]:
    """Feeds a caller's request stream to one attempt after another.

    Args:
        source: The caller's request stream.
        limit_bytes: Most bytes kept for replay.
    """

    def __init__(self, source: AsyncIterator[M], limit_bytes: int) -> None:
        self._source = source
        self._limit = limit_bytes
        self._kept: list[M] = []
        self._kept_bytes = 0
        self._keeping = True
        self._attempts = 0
        # Read from the caller, not yet taken by an attempt (the end comes last).
        self._ahead: deque[M | _End | _Failed] = deque()
        self._ended: _End | _Failed | None = None
        self._reader: asyncio.Task[None] | None = None
        self._arrived: asyncio.Future[None] | None = None  # an attempt waits for a message
        self._room: asyncio.Future[None] | None = None  # the reader waits for room

    @property
    def replayable(self) -> bool:
        """Whether a new attempt could be sent everything the previous one was."""
        return self._keeping

    def commit(self) -> None:
        """The call has its answer coming: stop keeping messages, free the buffer."""
        self._keeping = False
        self._kept.clear()
        self._kept_bytes = 0

    def close(self) -> None:
        """Stops reading from the caller (the call is over)."""
        if self._reader is not None:
            self._reader.cancel()

    async def attempt(self) -> AsyncIterator[M]:
        """The request stream of one attempt: the kept messages, then the caller's next.

        Starting an attempt ends the previous one's stream, so two attempts never read
        the caller's stream at once.

        Yields:
            Request messages.

        Raises:
            RuntimeError: A second attempt after the buffer stopped keeping messages.
            Exception: What reading the caller's stream raised.
        """
        self._attempts += 1
        me = self._attempts
        if me > 1 and not self._keeping:
            raise RuntimeError("requests already sent were not kept; cannot replay")
        for kept in list(self._kept):
            yield kept
        while True:
            message = await self._next(me)
            if message is None or isinstance(message, _End):
                return
            if self._keeping:
                self._kept.append(message)
                self._kept_bytes += len(message)
                if self._kept_bytes > self._limit:
                    self.commit()
            yield message

    async def drain(self, limit_s: float) -> bool:
        """Reads and discards the rest of the caller's stream (see mesh_common.streams).

        Args:
            limit_s: Longest time to keep reading.

        Returns:
            True when the caller ended its stream within the limit.
        """
        self._attempts += 1  # an attempt still reading stops taking messages
        me = self._attempts
        self.commit()
        try:
            async with asyncio.timeout(limit_s):
                with contextlib.suppress(Exception):
                    while (item := await self._next(me)) is not None:
                        if isinstance(item, _End):
                            break
        except TimeoutError:
            return False
        return True

    async def _next(self, me: int) -> M | _End | None:
        """The caller's next message or the end of its stream, for attempt `me`.

        Returns:
            None once a newer attempt started (what was read stays for that one).

        Raises:
            Exception: What reading the caller's stream raised.
        """
        while True:
            if me != self._attempts:
                return None
            if self._ended is not None:
                return self._finished(self._ended)
            if self._ahead:
                item = self._ahead.popleft()
                if self._room is not None and not self._room.done():
                    self._room.set_result(None)
                if isinstance(item, _End | _Failed):
                    self._ended = item
                    return self._finished(item)
                return item
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="proxy-request-reader")
            if self._arrived is None or self._arrived.done():
                self._arrived = asyncio.get_running_loop().create_future()
            # Shielded: an attempt abandoned while waiting leaves the future to the next.
            await asyncio.shield(self._arrived)

    @staticmethod
    def _finished(item: _End | _Failed) -> _End:
        if isinstance(item, _Failed):
            raise item.error
        return item

    async def _read(self) -> None:
        try:
            while True:
                while len(self._ahead) >= READ_AHEAD:
                    self._room = asyncio.get_running_loop().create_future()
                    await self._room
                try:
                    message = await anext(self._source)
                except StopAsyncIteration:
                    break
                self._offer(message)
            self._offer(_END)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self._offer(_Failed(error))

    def _offer(self, item: M | _End | _Failed) -> None:
        self._ahead.append(item)
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)
