"""`upload`: a large recording streamed through the gateway into PostgreSQL.

The same bytes (a WAV header, then a tone) are PUT through the gateway, which streams them
into UploadAudio, and measured against what PostgreSQL alone takes in the same run: the
same bytes COPYed from the bench process into a table laid out like `audio_chunks`, in
rows and transactions as meeting_service writes them (`upload_s3` does the same for the
S3 store). Subject and reference alternate (`ROUNDS` each) and each keeps its median, so a
swing in the neighbours' load lands on both; before each timed run the disk is settled
(`settle_disk`), so no run pays for writing out what the one before it left behind. The
gateway's and meeting_service's peak RSS are read from the kernel (VmHWM, reset before each
upload) at a small and a large size, after an untimed warm-up upload: a streaming path
holds the same memory at both.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import numpy as np

from bench.context import BenchContext
from bench.httpclient import PutResult, put_stream
from bench.model import Check, Result, ratio
from bench.processes import ServiceProcess
from gateway.settings import GatewaySettings
from meeting_service.recordings.repository import audio_rows

MIB = 1024 * 1024
SAMPLE_RATE = 16_000
RSS_LIMIT_MIB = 200
# "The same" peak at both sizes: within this fraction of the small upload's peak.
RSS_GROWTH_TOLERANCE = 0.10
WARM_UP_BYTES = 8 * MIB
# Large uploads through the mesh, each followed by the reference on the same bytes.
ROUNDS = 5
# The gateway's default `upload_chunk_bytes`: one UploadAudio message, one transaction.
GATEWAY_CHUNK_BYTES = GatewaySettings.model_fields["upload_chunk_bytes"].default


def wav_header(total_bytes: int) -> bytes:
    """A 44-byte header of a 16 kHz mono 16-bit WAV file of `total_bytes` in all."""
    data = total_bytes - 44
    return (
        b"RIFF"
        + struct.pack("<I", total_bytes - 8)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def tone_block(size: int = MIB) -> bytes:
    """`size` bytes of a 220 Hz tone as 16-bit PCM (a whole number of periods)."""
    t = np.arange(size // 2) / SAMPLE_RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * 220.0 * t)).astype("<i2").tobytes()


async def _new_meeting(gateway: ServiceProcess, authorization: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/meetings",
            json={"title": "upload benchmark"},
            headers={"Authorization": authorization},
        ) as response,
    ):
        response.raise_for_status()
        return str((await response.json())["meeting"]["id"])


async def upload_through_gateway(
    gateway: ServiceProcess, meeting: ServiceProcess, authorization: str, size: int
) -> tuple[PutResult, int, int]:
    """PUTs `size` bytes of WAV to a new meeting; returns the result and both peak RSS."""
    meeting_id = await _new_meeting(gateway, authorization)
    for process in (gateway, meeting):
        process.reset_peak_rss()
    result = await put_stream(
        f"{gateway.url}/v1/meetings/{meeting_id}/audio",
        wav_header(size),
        tone_block(),
        size,
        {"Authorization": authorization, "Content-Type": "audio/wav"},
    )
    if result.status != 200 or not result.body.get("complete"):
        raise RuntimeError(f"upload of {size} bytes failed: {result.status} {result.body}")
    return result, gateway.peak_rss(), meeting.peak_rss()


@dataclass
class Rounds:
    """The timed rounds of an upload scenario: the mesh and its reference, alternated.

    Attributes:
        mesh_seconds: Each large upload's time through the gateway.
        reference_seconds: Each reference run's time (the store alone).
        gateway_peak: The gateway's highest peak RSS over the large uploads.
        meeting_peak: meeting_service's highest peak RSS over them.
    """

    mesh_seconds: list[float] = field(default_factory=list)
    reference_seconds: list[float] = field(default_factory=list)
    gateway_peak: int = 0
    meeting_peak: int = 0


async def settle_disk(dsn: str) -> None:
    """Writes out what earlier runs left for the disk, outside any timed run.

    A run leaves PostgreSQL's dirty buffers and the kernel's dirty pages behind (a GiB or
    more of table and log); written out in the background, they would slow whichever run
    came next, the mesh's or the reference's, by chance. A CHECKPOINT writes the former,
    `sync` the latter.

    Args:
        dsn: The run's database.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    await asyncio.to_thread(os.sync)


async def alternate(
    gateway: ServiceProcess,
    meeting: ServiceProcess,
    authorization: str,
    size: int,
    reference: Callable[[], Awaitable[float]],
    settle: Callable[[], Awaitable[None]],
) -> Rounds:
    """`ROUNDS` large uploads through the gateway, each followed by one reference run.

    `settle` runs before each of them (`settle_disk`), untimed.
    """
    rounds = Rounds()
    for _ in range(ROUNDS):
        await settle()
        result, at_gateway, at_meeting = await upload_through_gateway(
            gateway, meeting, authorization, size
        )
        rounds.mesh_seconds.append(result.seconds)
        rounds.gateway_peak = max(rounds.gateway_peak, at_gateway)
        rounds.meeting_peak = max(rounds.meeting_peak, at_meeting)
        await settle()
        rounds.reference_seconds.append(await reference())
    return rounds


async def _postgres_only(dsn: str, size: int, chunk: int) -> float:
    """Seconds PostgreSQL alone takes to store `size` bytes as meeting_service does.

    The same rows (`audio_rows`) in a copy of `audio_chunks`' layout, one transaction per `chunk`
    (commits not waiting for the disk, set once for the session: no statement of its own
    per chunk), then one durable commit.
    """
    block = tone_block(chunk)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE bench_audio (LIKE audio_chunks INCLUDING ALL)")
        key = uuid.uuid4()
        started = time.perf_counter()
        await conn.execute("SET synchronous_commit TO OFF")
        for offset in range(0, size, chunk):
            data = memoryview(block)[: min(chunk, size - offset)]
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bench_audio", records=audio_rows(key, offset, data)
                )
        await conn.execute("RESET synchronous_commit")
        await conn.execute("CREATE TABLE bench_audio_done ()")  # a durable commit
        seconds = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_audio, bench_audio_done")
        return seconds
    finally:
        await conn.close()


def _mib(value: float) -> float:
    return round(value / MIB, 1)


async def upload(context: BenchContext) -> Result:
    """1 GiB (quick: 256 MiB) through the gateway into PostgreSQL vs. PostgreSQL alone."""
    small, large = (32 * MIB, 256 * MIB) if context.quick else (100 * MIB, 1024 * MIB)
    authorization = context.authorization()
    async with context.meeting_and_gateway() as (meeting, gateway, dsn):
        # Untimed: what the services set up once (pool connections, threads) is not
        # memory an upload's size decides.
        await upload_through_gateway(gateway, meeting, authorization, WARM_UP_BYTES)
        first, gateway_small, meeting_small = await upload_through_gateway(
            gateway, meeting, authorization, small
        )
        rounds = await alternate(
            gateway,
            meeting,
            authorization,
            large,
            lambda: _postgres_only(dsn, large, GATEWAY_CHUNK_BYTES),
            lambda: settle_disk(dsn),
        )
    gateway_large, meeting_large = rounds.gateway_peak, rounds.meeting_peak
    postgres_rate = round(large / MIB / statistics.median(rounds.reference_seconds), 1)
    rate = round(large / MIB / statistics.median(rounds.mesh_seconds), 1)
    share = ratio(rate, postgres_rate)

    def flat(at_small: int, at_large: int) -> bool:
        return at_large <= at_small * (1 + RSS_GROWTH_TOLERANCE)

    checks = [
        Check("rate vs PostgreSQL alone", f"{share}", ">= 0.8", (share or 0) >= 0.8),
        Check(
            "gateway peak RSS small/large",
            f"{_mib(gateway_small)}/{_mib(gateway_large)} MiB",
            f"same (within {RSS_GROWTH_TOLERANCE:.0%}) and < {RSS_LIMIT_MIB} MiB",
            flat(gateway_small, gateway_large) and gateway_large < RSS_LIMIT_MIB * MIB,
        ),
        Check(
            "meeting_service peak RSS small/large",
            f"{_mib(meeting_small)}/{_mib(meeting_large)} MiB",
            f"same (within {RSS_GROWTH_TOLERANCE:.0%}) and < {RSS_LIMIT_MIB} MiB",
            flat(meeting_small, meeting_large) and meeting_large < RSS_LIMIT_MIB * MIB,
        ),
    ]
    return Result(
        name="upload",
        value=rate,
        unit="MiB/s",
        reference=postgres_rate,
        ratio=share,
        goal="rate >= 0.8x PostgreSQL alone; peak RSS flat across sizes and < 200 MiB",
        met=all(c.met for c in checks),
        checks=checks,
        details={
            "small_mib": _mib(small),
            "large_mib": _mib(large),
            "small_rate_mib_s": round(small / MIB / first.seconds, 1),
            "large_seconds": round(statistics.median(rounds.mesh_seconds), 1),
            "rounds": ROUNDS,
            "postgres_only_rate_mib_s": postgres_rate,
            "gateway_peak_rss_small_mib": _mib(gateway_small),
            "gateway_peak_rss_large_mib": _mib(gateway_large),
            "meeting_peak_rss_small_mib": _mib(meeting_small),
            "meeting_peak_rss_large_mib": _mib(meeting_large),
            "postgres": "embedded, durable (fsync on), as `meeting-mesh dev` runs it",
        },
        limits=(
            f"the database: PostgreSQL alone takes {postgres_rate} MiB/s of the same bytes "
            "here (COPYed from the bench process as the same page-sized rows, one "
            "transaction per chunk), writing each byte to its log and its table on this "
            f"VM's shared disk, and the upload gets {ratio(rate, postgres_rate)} of that; the "
            "rest is the gateway and meeting_service (HTTP parsing, gRPC, the COPY's "
            "encoding, SHA-256) sharing the 2 cores with it."
        ),
    )
