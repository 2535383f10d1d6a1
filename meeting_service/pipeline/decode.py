"""Decoding a stored recording to 16 kHz mono LINEAR16, as a stream.

PyAV reads the recording through `RecordingFile`, a file object whose reads fetch one
stored chunk at a time from PostgreSQL (so no recording is ever whole in memory, and
containers that seek, like MP4, still work). Decoding blocks, so it runs in a thread; the
PCM it produces crosses back to the event loop through a bounded queue, which holds the
decoder back when the consumer (a GPU stream) is slower.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import av

SAMPLE_RATE = 16_000
BLOCK_BYTES = 64 * 1024  # 2 s of PCM per block handed to the loop
QUEUE_BLOCKS = 8
# A database read that takes longer than this is treated as a lost database.
READ_TIMEOUT_S = 60.0

ReadAt = Callable[[int], Awaitable[tuple[int, bytes] | None]]


class UndecodableRecording(Exception):
    """The recording cannot be decoded; the message says why in words a user can read."""


class RecordingFile(io.RawIOBase):
    """A read-only, seekable file over a stored recording, for use in a worker thread.

    Each read that leaves the cached chunk asks the event loop for the chunk holding the
    position and waits for it.

    Args:
        read_at: Coroutine function returning (start, bytes) of the chunk holding an
            offset, or None past the end.
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


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


class _Stopped(Exception):
    """The consumer went away; the decode thread stops."""


async def decode_pcm(
    read_at: ReadAt, size: int, *, block_bytes: int = BLOCK_BYTES
) -> AsyncGenerator[bytes]:
    """Decodes a stored recording to 16 kHz mono s16le PCM, block by block.

    Close the iterator (`contextlib.aclosing`) when stopping early: that stops the thread.

    Args:
        read_at: Reads the chunk holding an offset (see `RecordingFile`).
        size: The recording's size in bytes.
        block_bytes: Size of the blocks yielded (the last may be shorter).

    Yields:
        PCM blocks, in order.

    Raises:
        UndecodableRecording: The bytes are not decodable audio.
        Exception: Whatever `read_at` raised (a lost database), unchanged.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | _End] = asyncio.Queue(QUEUE_BLOCKS)
    stop = threading.Event()

    def put(item: bytes | _End) -> None:
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while True:
            try:
                future.result(0.5)
                return
            except concurrent.futures.TimeoutError:
                if stop.is_set():
                    future.cancel()
                    raise _Stopped from None

    def work() -> None:
        try:
            _decode(RecordingFile(read_at, size, loop), block_bytes, put, stop)
            put(_End())
        except _Stopped:
            pass
        except Exception as error:  # handed to the consumer, which raises it
            with contextlib.suppress(_Stopped):
                put(_End(error))

    thread = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise _translate(item.error)
                return
            yield item
    finally:
        stop.set()
        while not queue.empty():
            queue.get_nowait()
        # The thread sees `stop` within half a second (or at its next database read).
        await asyncio.shield(thread)


def _decode(
    source: RecordingFile,
    block_bytes: int,
    put: Callable[[bytes], None],
    stop: threading.Event,
) -> None:
    with av.open(source, mode="r") as container:
        if not container.streams.audio:
            raise UndecodableRecording("the recording has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        pending = bytearray()

        def take(frames: list[av.AudioFrame]) -> None:
            for frame in frames:
                # Planes may be padded past the last sample; s16 mono is 2 bytes a sample.
                pending.extend(bytes(frame.planes[0])[: frame.samples * 2])
            while len(pending) >= block_bytes:
                put(bytes(pending[:block_bytes]))
                del pending[:block_bytes]

        for frame in container.decode(stream):
            if stop.is_set():
                raise _Stopped
            take(resampler.resample(frame))
        take(resampler.resample(None))
        if pending:
            put(bytes(pending))


def _translate(error: BaseException) -> BaseException:
    if isinstance(error, av.error.FFmpegError):
        text = str(error).strip() or type(error).__name__
        # FFmpeg messages may end with a file name; ours means nothing to a user.
        return UndecodableRecording(f"the recording could not be decoded: {text.split(': ')[0]}")
    return error
