"""Probing a stored recording with PyAV (in a thread): is it audio, how long is it.

It reads the recording where it is stored (`RecordingFile`): most containers state their
length in a header, so a probe reads a few spans, not the whole recording.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import av

from contract_errors.meeting import MeetingError
from gen.meeting.v1 import meeting_pb2
from meeting_service.recordings.recording_file import ReadAt, RecordingFile


@dataclass(frozen=True)
class AudioInfo:
    """What the probe found.

    Attributes:
        duration_us: Length of the recording in microseconds.
        codec: The audio codec's name ("pcm_s16le", "mp3"...).
    """

    duration_us: int
    codec: str


async def probe_audio(read_at: ReadAt, size: int) -> AudioInfo:
    """Opens a recording, decodes its first audio frame and measures its length.

    Args:
        read_at: Reads a span of the stored recording (`UploadsRepository.read_at`).
        size: The recording's size in bytes.

    Returns:
        What was found.

    Raises:
        MeetingError: NOT_AUDIO with the reason, when it is not decodable audio.
    """
    loop = asyncio.get_running_loop()
    return await asyncio.to_thread(_probe, lambda: RecordingFile(read_at, size, loop), size)


def _not_audio(why: str) -> MeetingError:
    return MeetingError(meeting_pb2.ERROR_REASON_NOT_AUDIO, f"the recording is not audio: {why}")


def _probe(open_file: Callable[[], RecordingFile], size: int) -> AudioInfo:
    if size == 0:
        raise _not_audio("it is empty")
    try:
        with av.open(open_file(), mode="r") as container:
            if not container.streams.audio:
                raise _not_audio("it has no audio stream")
            stream = container.streams.audio[0]
            # Opening succeeds on many near-misses; only a decoded frame proves audio.
            frame = next(container.decode(stream), None)
            if frame is None:
                raise _not_audio("no audio frame could be decoded")
            if container.duration is not None and container.duration > 0:
                duration_us = int(container.duration)  # AV_TIME_BASE is microseconds
            elif stream.duration is not None and stream.time_base is not None:
                duration_us = int(stream.duration * stream.time_base * 1_000_000)
            else:
                duration_us = _measure_by_packets(open_file())
            return AudioInfo(duration_us=duration_us, codec=stream.codec_context.name)
    except MeetingError:
        raise
    except (av.error.FFmpegError, ValueError, StopIteration, IndexError) as error:
        raise _not_audio(_describe(error)) from None


def _measure_by_packets(file: RecordingFile) -> int:
    # Headerless streams (raw ADTS, some MP3s) state no length; sum the packets instead.
    total = Fraction(0)
    with av.open(file, mode="r") as container:
        stream = container.streams.audio[0]
        for packet in container.demux(stream):
            if packet.duration is not None and packet.time_base is not None:
                total += packet.duration * packet.time_base
    return int(total * 1_000_000)


def _describe(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    # FFmpeg messages may end with a file name; the caller never saw ours.
    return text.split(": '")[0][:200]
