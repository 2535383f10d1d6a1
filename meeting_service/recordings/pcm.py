"""The one audio format meeting_service hands to the GPU service: 16-bit mono PCM at 16 kHz.

Stored recordings are decoded to it (`decode`), live audio arrives in it, and a live
session's recording is stored as a WAV file of it.
"""

from __future__ import annotations

import struct

SAMPLE_RATE_HZ = 16_000
BYTES_PER_SECOND = 2 * SAMPLE_RATE_HZ
WAV_HEADER_BYTES = 44


def duration_us(pcm_bytes: int) -> int:
    """How long that many bytes of the format play, in microseconds."""
    return pcm_bytes * 1_000_000 // BYTES_PER_SECOND


def wav_header(data_bytes: int) -> bytes:
    """The 44-byte header of a WAV file holding `data_bytes` of the format."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE_HZ, BYTES_PER_SECOND, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def is_plain_wav(head: bytes, size: int) -> bool:
    """Whether a file is a WAV of the format with exactly `wav_header`'s header.

    Such a file's PCM is all of it past `WAV_HEADER_BYTES`.

    Args:
        head: The file's first bytes (at least the header's).
        size: The file's size in bytes.

    Returns:
        True for such a file (a live session's recording, most plain WAV writers).
    """
    data_bytes = size - WAV_HEADER_BYTES
    return (
        data_bytes >= 0
        and data_bytes % 2 == 0
        and head[:WAV_HEADER_BYTES] == wav_header(data_bytes)
    )
