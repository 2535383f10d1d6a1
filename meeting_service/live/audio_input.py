"""Live audio as a client sends it, turned into the 16 kHz mono LINEAR16 the recognizer takes.

Raw PCM (16-bit integer or 32-bit float, mono or stereo, at the common capture rates) is
resampled as it arrives by PyAV's `AudioResampler` (FFmpeg's swresample), which keeps its
filter state from one block to the next, so block boundaries leave no clicks. Opus in WebM
or Ogg (a browser's MediaRecorder) is demuxed and decoded by PyAV in a worker thread, fed
through a bounded queue that PyAV reads as a file: a stream cannot be seeked, and the
container's bytes arrive in pieces of any size. The supported formats are listed in
docs/live.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import av
import numpy as np

from contract_errors.meeting import MeetingError
from gen.meeting.v1 import live_audio_pb2, meeting_pb2, meeting_service_pb2
from meeting_service import validation
from meeting_service.recordings.pcm import SAMPLE_RATE_HZ

Encoding = live_audio_pb2.LiveAudioEncoding
PCM_SAMPLE_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
_RAW: dict[int, tuple[str, np.dtype[np.generic]]] = {
    # encoding: (PyAV's sample format, the samples' NumPy type)
    live_audio_pb2.LIVE_AUDIO_ENCODING_UNSPECIFIED: ("s16", np.dtype("<i2")),
    live_audio_pb2.LIVE_AUDIO_ENCODING_LINEAR16: ("s16", np.dtype("<i2")),
    live_audio_pb2.LIVE_AUDIO_ENCODING_FLOAT32LE: ("flt", np.dtype("<f4")),
}
_CONTAINERS = {
    live_audio_pb2.LIVE_AUDIO_ENCODING_WEBM_OPUS: "webm",
    live_audio_pb2.LIVE_AUDIO_ENCODING_OGG_OPUS: "ogg",
}
_LAYOUTS = {1: "mono", 2: "stereo"}
# Opus carries its parameters in the header: no need to read seconds of audio ahead.
_LOW_LATENCY = {"probesize": "32", "analyzeduration": "0", "fflags": "nobuffer"}
_QUEUED_PIECES = 16  # container pieces waiting for the decoder (MediaRecorder: 4 a second)
SUPPORTED = (
    "LINEAR16 or FLOAT32LE PCM, 1 or 2 channels, at "
    + ", ".join(str(rate) for rate in PCM_SAMPLE_RATES)
    + " Hz; or WEBM_OPUS, OGG_OPUS"
)

Converter = Callable[[AsyncIterator[bytes]], AsyncIterator[bytes]]


def unsupported(message: str, field: str) -> MeetingError:
    """The UNSUPPORTED_AUDIO error, naming the field and what is supported."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_UNSUPPORTED_AUDIO,
        f"{message}; supported: {SUPPORTED}",
        {"field": field, "supported": SUPPORTED},
    )


def converter(config: meeting_service_pb2.LiveAudioConfig) -> Converter:
    """Checks a live config's audio format and returns what converts its audio.

    Args:
        config: The stream's config.

    Returns:
        A function from the client's audio blocks to 16 kHz mono LINEAR16 blocks.

    Raises:
        MeetingError: INVALID_FIELD for a value outside the field's rules; UNSUPPORTED_AUDIO
            for a format that is not supported, naming what is.
    """
    validation.check(config, "sample_rate_hertz", "config.sample_rate_hertz")
    validation.check(config, "channels", "config.channels")
    container = _CONTAINERS.get(config.encoding)
    if container is not None:
        return lambda blocks: _decode_container(container, blocks)
    raw = _RAW.get(config.encoding)
    if raw is None:
        raise unsupported(f"encoding {config.encoding} is not supported", "config.encoding")
    rate = config.sample_rate_hertz or SAMPLE_RATE_HZ
    if rate not in PCM_SAMPLE_RATES:
        raise unsupported(
            f"a sample rate of {rate} Hz is not supported", "config.sample_rate_hertz"
        )
    pcm = _RawPcm(raw[0], raw[1], rate, config.channels or 1)
    return pcm.convert


@dataclass(frozen=True)
class _RawPcm:
    sample_format: str
    dtype: np.dtype[np.generic]
    rate: int
    channels: int

    async def convert(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        resampler = _to_recognizer()
        frame_bytes = self.dtype.itemsize * self.channels
        carry = b""
        async for block in blocks:
            data = carry + block
            cut = len(data) - len(data) % frame_bytes
            carry = data[cut:]
            if cut and (pcm := self._resample(resampler, data[:cut])):
                yield pcm
        # A partial sample frame left at the very end is not audio.
        if pcm := _pcm_of(resampler.resample(None)):
            yield pcm

    def _resample(self, resampler: av.AudioResampler, data: bytes) -> bytes:
        samples = np.frombuffer(data, dtype=self.dtype).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(
            samples, format=self.sample_format, layout=_LAYOUTS[self.channels]
        )
        frame.sample_rate = self.rate
        return _pcm_of(resampler.resample(frame))


def _to_recognizer() -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE_HZ)


def _pcm_of(frames: list[av.AudioFrame]) -> bytes:
    # Planes may be padded past the last sample; s16 mono is 2 bytes a sample.
    return b"".join(bytes(frame.planes[0])[: frame.samples * 2] for frame in frames)


class _Pieces:
    """A read-only, unseekable file over a queue of byte pieces, for PyAV in a thread."""

    def __init__(self) -> None:
        self.pieces: queue.Queue[bytes | None] = queue.Queue(_QUEUED_PIECES)
        self._buffer = b""
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        while not self._buffer and not self._ended:
            piece = self.pieces.get()
            if piece is None:
                self._ended = True
            else:
                self._buffer = piece
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def stop(self) -> None:
        """Ends the stream for a reader that may still wait, dropping what it did not read."""
        with contextlib.suppress(queue.Empty):
            while True:
                self.pieces.get_nowait()
        with contextlib.suppress(queue.Full):
            self.pieces.put_nowait(None)


async def _decode_container(container: str, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Decodes a streamed container in a thread; yields its audio as recognizer PCM."""
    loop = asyncio.get_running_loop()
    source = _Pieces()
    decoded: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()

    def hand_over(item: bytes | BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone; nobody listens
            loop.call_soon_threadsafe(decoded.put_nowait, item)

    def work() -> None:
        try:
            with av.open(source, mode="r", format=container, options=_LOW_LATENCY) as media:
                if not media.streams.audio:
                    raise unsupported(f"the {container} stream has no audio", "audio")
                resampler = _to_recognizer()
                for frame in media.decode(media.streams.audio[0]):
                    hand_over(_pcm_of(resampler.resample(frame)))
                hand_over(_pcm_of(resampler.resample(None)))
            hand_over(None)
        except av.error.FFmpegError as error:
            why = str(error.strerror or type(error).__name__)
            hand_over(unsupported(f"the audio is not {container} with Opus ({why})", "audio"))
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(error)

    async def feed() -> None:
        try:
            async for block in blocks:
                if block:
                    await asyncio.to_thread(source.pieces.put, block)
        finally:
            await asyncio.to_thread(source.pieces.put, None)

    feeder = asyncio.create_task(feed())
    thread = asyncio.ensure_future(asyncio.to_thread(work))
    try:
        while (item := await decoded.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            if item:
                yield item
        await feeder  # the audio source's own error, if it failed
    finally:
        feeder.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await feeder
        source.stop()
        with contextlib.suppress(Exception):
            await asyncio.shield(thread)
