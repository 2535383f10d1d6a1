"""A stored recording as a seekable file, for PyAV in a worker thread.

Probing an upload and decoding it for a job both read the recording where it lies, in
PostgreSQL: no copy on local disk, never whole in memory.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

# A database read that takes longer than this is treated as a lost database.
READ_TIMEOUT_S = 60.0

ReadAt = Callable[[int], Awaitable[tuple[int, bytes] | None]]


class RecordingFile(io.RawIOBase):
    """A read-only, seekable file over a stored recording, for use in a worker thread.

    Each read that leaves the cached span asks the event loop for the span holding the
    position and waits for it.

    Args:
        read_at: Coroutine function returning (start, bytes) of a span from an offset
            on, or None past the end (`UploadsRepository.read_at`).
        size: The recording's size in bytes.
        loop: The event loop that runs `read_at`.
    """

    def __init__(self, read_at: ReadAt, size: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._read_at = read_at
        self._size = size
        self._loop = loop
        self._pos = 0
        self._chunk_start = 0
        self._chunk = b""

    def readable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return True

    def tell(self) -> int:  # noqa: D102
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:  # noqa: D102
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}.get(whence)
        if base is None:
            raise ValueError(f"unsupported whence {whence}")
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:  # noqa: D102
        if self._pos >= self._size:
            return b""
        if not self._chunk_start <= self._pos < self._chunk_start + len(self._chunk):
            coroutine: Coroutine[Any, Any, tuple[int, bytes] | None] = self._fetch(self._pos)
            found = asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(READ_TIMEOUT_S)
            if found is None:
                return b""
            self._chunk_start, self._chunk = found
        start = self._pos - self._chunk_start
        end = len(self._chunk) if size < 0 else min(len(self._chunk), start + size)
        data = self._chunk[start:end]
        self._pos += len(data)
        return data

    async def _fetch(self, offset: int) -> tuple[int, bytes] | None:
        return await self._read_at(offset)
