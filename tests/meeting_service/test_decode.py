"""Decoding stored recordings to the GPU format: plain WAVs copied, the rest through PyAV."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from meeting_service.recordings.decode import UndecodableRecording, decode_pcm
from meeting_service.recordings.pcm import (
    SAMPLE_RATE_HZ,
    WAV_HEADER_BYTES,
    is_plain_wav,
    wav_header,
)
from meeting_service.recordings.recording_file import ReadAt

SPAN = 10_000  # stored span size (odd offsets: spans cut samples and the header)


def stored(data: bytes) -> ReadAt:
    """`read_at` over bytes stored in spans of `SPAN`, as `UploadsRepository.read_at`."""

    async def read_at(offset: int) -> tuple[int, bytes] | None:
        start = offset - offset % SPAN
        return (start, data[start : start + SPAN]) if start < len(data) else None

    return read_at


def pcm_of(seconds: float) -> bytes:
    rng = np.random.default_rng(7)
    return rng.integers(-20_000, 20_000, int(seconds * SAMPLE_RATE_HZ), dtype="<i2").tobytes()


def wav_with_list_chunk(pcm: bytes) -> bytes:
    """The same PCM with a LIST chunk before the data, as ffmpeg writes: not plain."""
    info = b"INFOISFT" + struct.pack("<I", 14) + b"Lavf61.7.100\0\0"
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE_HZ, 2 * SAMPLE_RATE_HZ, 2, 16)
    body = (
        b"WAVEfmt "
        + fmt
        + b"LIST"
        + struct.pack("<I", len(info))
        + info
        + b"data"
        + struct.pack("<I", len(pcm))
        + pcm
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


async def decoded(data: bytes, block_bytes: int = 64 * 1024) -> list[bytes]:
    return [b async for b in decode_pcm(stored(data), len(data), block_bytes=block_bytes)]


async def test_a_plain_wav_and_a_decoded_one_give_the_same_pcm_in_the_same_blocks() -> None:
    pcm = pcm_of(9.3)
    plain = wav_header(len(pcm)) + pcm
    other = wav_with_list_chunk(pcm)
    assert is_plain_wav(plain[:WAV_HEADER_BYTES], len(plain))  # copied
    assert not is_plain_wav(other[:WAV_HEADER_BYTES], len(other))  # decoded by PyAV
    assert await decoded(plain) == await decoded(other)
    blocks = await decoded(plain)
    assert b"".join(blocks) == pcm
    assert {len(b) for b in blocks[:-1]} == {64 * 1024}


async def test_pythons_wave_module_writes_plain_wavs() -> None:
    pcm = pcm_of(1.0)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE_HZ)
        wav.writeframes(pcm)
    written = out.getvalue()
    assert is_plain_wav(written[:WAV_HEADER_BYTES], len(written))
    assert b"".join(await decoded(written)) == pcm


async def test_a_header_that_does_not_match_the_size_is_decoded_not_copied() -> None:
    pcm = pcm_of(2.0)
    # The header says more data than is stored (a recording cut short): decoded by PyAV,
    # which stops at the end of the bytes.
    cut = wav_header(len(pcm) + 1000) + pcm
    assert not is_plain_wav(cut[:WAV_HEADER_BYTES], len(cut))
    assert b"".join(await decoded(cut)) == pcm
    # Another rate is resampled, never copied as it is.
    at_8k = bytearray(wav_header(len(pcm)) + pcm)
    at_8k[24:32] = struct.pack("<II", 8000, 16000)
    assert not is_plain_wav(bytes(at_8k[:WAV_HEADER_BYTES]), len(at_8k))
    assert len(b"".join(await decoded(bytes(at_8k)))) == 2 * len(pcm)


async def test_what_is_not_audio_is_still_refused() -> None:
    with pytest.raises(UndecodableRecording):
        await decoded(b"not audio at all" * 100)
