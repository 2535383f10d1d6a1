"""Recordings as browsers hand them over: video containers made with PyAV, in memory.

as_video(dialogue(2), "mp4")  # MPEG-4 video + AAC audio, what a Zoom recording holds
as_video(None, "webm")        # VP8 video and no audio track at all
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import cast

import av
import numpy as np

_CODECS = {"mp4": ("mpeg4", "aac", 16_000), "webm": ("libvpx", "libopus", 48_000)}
_FPS = 5
_SIZE = 32


def as_video(audio: np.ndarray | None, container: str) -> bytes:
    """Encodes a small video with `audio` (16 kHz float samples) as its sound track.

    Args:
        audio: The samples in [-1, 1] at 16 kHz; None for a video with no audio track.
        container: "mp4" or "webm".

    Returns:
        The file's bytes.
    """
    video_codec, audio_codec, rate = _CODECS[container]
    seconds = 1.0 if audio is None else len(audio) / 16_000
    out = io.BytesIO()
    with av.open(out, mode="w", format=container) as output:
        video = cast(av.VideoStream, output.add_stream(video_codec, rate=_FPS))
        video.width = video.height = _SIZE
        video.pix_fmt = "yuv420p"
        # Every stream is added before the first packet: muxing writes the header.
        sound = (
            None
            if audio is None
            else cast(av.AudioStream, output.add_stream(audio_codec, rate=rate))
        )
        if sound is not None:
            sound.layout = "mono"
        for index in range(max(1, int(seconds * _FPS))):
            shade = np.full((_SIZE, _SIZE, 3), (index * 40) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(shade, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, _FPS)
            output.mux(video.encode(frame))
        output.mux(video.encode(None))
        if sound is not None and audio is not None:
            samples = np.interp(
                np.arange(int(len(audio) * rate / 16_000)) * 16_000 / rate,
                np.arange(len(audio)),
                audio,
            ).astype(np.float32)
            track = av.AudioFrame.from_ndarray(samples[np.newaxis, :], format="fltp", layout="mono")
            track.sample_rate = rate
            track.pts = 0
            track.time_base = Fraction(1, rate)
            output.mux(sound.encode(track))
            output.mux(sound.encode(None))
    return out.getvalue()
