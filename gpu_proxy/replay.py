"""Request messages kept until the first response, so a failed stream can be replayed.

A streaming call can move to another node only if everything already sent to the first one
can be sent again. The buffer keeps each message as it is forwarded, until the first
response arrives (from then on the call is committed to its node) or until the kept bytes
pass a limit (from then on a failure cannot be retried and the caller retries the whole
job). Messages are read from the caller one at a time, as the current attempt asks for
them, so gRPC flow control still reaches the caller: the buffer never holds more than
the limit, plus one message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol


class Message(Protocol):
    """A protobuf message (what is needed of it here)."""

    def ByteSize(self) -> int:
        """Returns the serialized size."""
        ...


class _End:
    pass


_END = _End()


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
        self._fetch: asyncio.Future[M | _End] | None = None
        self._attempts = 0

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
        if self._fetch is not None:
            self._fetch.cancel()

    async def attempt(self) -> AsyncIterator[M]:
        """The request stream of one attempt: the kept messages, then the caller's next.

        Starting an attempt ends the previous one's stream, so two attempts never read
        the caller's stream at once.

        Yields:
            Request messages.

        Raises:
            RuntimeError: A second attempt after the buffer stopped keeping messages.
        """
        self._attempts += 1
        me = self._attempts
        if me > 1 and not self._keeping:
            raise RuntimeError("requests already sent were not kept; cannot replay")
        for kept in list(self._kept):
            yield kept
        while True:
            if self._fetch is None:
                self._fetch = asyncio.ensure_future(anext(self._source, _END))
            fetch = self._fetch
            # Shielded: an attempt abandoned while waiting must not cancel the read from
            # the caller; the next attempt takes the same message.
            message = await asyncio.shield(fetch)
            if me != self._attempts:
                return
            self._fetch = None
            if isinstance(message, _End):
                return
            if self._keeping:
                self._kept.append(message)
                self._kept_bytes += message.ByteSize()
                if self._kept_bytes > self._limit:
                    self.commit()
            yield message

    async def drain(self, limit_seconds: float) -> bool:
        """Reads and discards the rest of the caller's stream (see mesh_common.streams).

        Args:
            limit_seconds: Longest time to keep reading.

        Returns:
            True when the caller ended its stream within the limit.
        """
        self._attempts += 1  # an attempt still reading stops taking messages
        self.commit()

        async def rest() -> None:
            if self._fetch is not None:
                fetch, self._fetch = self._fetch, None
                if isinstance(await fetch, _End):
                    return
            async for _ in self._source:
                pass

        try:
            async with asyncio.timeout(limit_seconds):
                await rest()
        except TimeoutError:
            return False
        return True
