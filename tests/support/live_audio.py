"""Live audio as browsers send it, made from 16 kHz test samples.

Raw PCM at a capture rate (resampled here with PyAV, so the service's resampler is checked
against an independent one) and Opus in WebM or Ogg, cut into the pieces a MediaRecorder
with a timeslice hands over.
"""

from __future__ import annotations

import io

import av
import numpy as np

from tests.support.gpu import SAMPLE_RATE


def at_rate(audio: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """16 kHz mono float32 samples resampled to `rate`, as interleaved `channels` channels."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(audio.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    frames = [*resampler.resample(frame), *resampler.resample(None)]
    mono = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)
    return np.repeat(mono, channels)


def linear16(audio: np.ndarray, rate: int, channels: int) -> bytes:
    """The samples as 16-bit little-endian PCM at `rate` with `channels` channels."""
    samples = at_rate(audio, rate, channels)
    return bytes((np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def float32le(audio: np.ndarray, rate: int, channels: int) -> bytes:
    """The samples as 32-bit little-endian float PCM at `rate` (an AudioWorklet's output)."""
    return bytes(at_rate(audio, rate, channels).astype("<f4").tobytes())


def opus(audio: np.ndarray, container: str = "webm") -> bytes:
    """The samples as 48 kHz stereo Opus in `container` ("webm" or "ogg")."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as media:
        stream = media.add_stream("libopus", rate=48_000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(
            at_rate(audio, 48_000, 2).reshape(1, -1), format="flt", layout="stereo"
        )
        frame.sample_rate = 48_000
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=48_000, frame_size=960)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                media.mux(packet)
        for packet in stream.encode(None):
            media.mux(packet)
    return out.getvalue()


def timeslices(data: bytes, seconds: float, duration_s: float) -> list[bytes]:
    """Cuts an encoded stream into the pieces MediaRecorder hands over every `seconds`."""
    count = max(1, round(duration_s / seconds))
    size = -(-len(data) // count)
    return [data[i : i + size] for i in range(0, len(data), size)]
