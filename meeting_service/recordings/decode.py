"""Decoding a stored recording to 16 kHz mono LINEAR16, as a stream.

A WAV already in that format with the plain 44-byte header (`pcm.is_plain_wav`: a live
session's recording, most WAV writers' output) needs no decoding: its bytes past the header
are copied out span by span. Anything else is decoded: PyAV reads the recording through
`RecordingFile`, a file object whose reads fetch one stored span at a time from PostgreSQL
(so no recording is ever whole in memory, and containers that seek, like MP4, still work).
Decoding blocks, so it runs in a thread; the PCM it produces crosses back to the event loop
through a bounded queue, which holds the decoder back when the consumer (a GPU stream) is
slower.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

import av

from meeting_service.recordings.pcm import SAMPLE_RATE_HZ, WAV_HEADER_BYTES, is_plain_wav
from meeting_service.recordings.recording_file import ReadAt, RecordingFile

# 8 s of PCM per block handed to the loop, and per message of the GPU calls: every message
# costs each hop (gpu_proxy, the node) the same transport work whatever its size, and the
# contract allows up to 1 MiB (docs/bench.md, `proxy_overhead`).
BLOCK_BYTES = 256 * 1024
QUEUE_BLOCKS = 8


class UndecodableRecording(Exception):
    """The recording cannot be decoded; the message says why in words a user can read."""


@dataclass(frozen=True)
class _End:
    error: BaseException | None = None


class _Stopped(Exception):
    """The consumer went away; the decode thread stops."""


async def decode_pcm(
    read_at: ReadAt, size: int, *, block_bytes: int = BLOCK_BYTES
) -> AsyncGenerator[bytes]:
    """Decodes a stored recording to 16 kHz mono s16le PCM, block by block.

    Close the iterator (`contextlib.aclosing`) when stopping early: that stops the thread
    decoding it, if any.

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
    first = await read_at(0) if size > 0 else None
    if first is not None and first[0] == 0 and is_plain_wav(first[1], size):
        blocks = _copied(read_at, first, size, block_bytes)
    else:
        blocks = _decoded(read_at, size, block_bytes)
    async with contextlib.aclosing(blocks):
        async for block in blocks:
            yield block


async def _copied(
    read_at: ReadAt, span: tuple[int, bytes], size: int, block_bytes: int
) -> AsyncGenerator[bytes]:
    """The PCM of a plain WAV: its bytes past the header, in blocks, as stored."""
    pending = bytearray()
    offset = WAV_HEADER_BYTES
    while offset < size:
        start, data = span
        if not start <= offset < start + len(data):
            found = await read_at(offset)
            if found is None:
                break  # fewer bytes stored than the size says: the rest is not there
            span = found
            continue
        piece = data[offset - start : size - start]
        pending += piece
        offset += len(piece)
        while len(pending) >= block_bytes:
            yield bytes(pending[:block_bytes])
            del pending[:block_bytes]
    if pending:
        yield bytes(pending)


async def _decoded(read_at: ReadAt, size: int, block_bytes: int) -> AsyncGenerator[bytes]:
    """Decodes with PyAV in a thread (see the module's docstring)."""
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
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)
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
