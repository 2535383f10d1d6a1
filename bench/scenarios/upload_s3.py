"""`upload_s3`: a large recording streamed through the gateway into S3 (SeaweedFS).

meeting_service stores recordings in a SeaweedFS S3 server on loopback (`weed mini`) as
multipart uploads. The reference is the same bytes put straight into the same server by
the bench process with the same client (aiobotocore) and the same part size, in the same
run: what the object store alone takes on this machine. Subject and reference alternate
(`ROUNDS` each, as in `upload`, the disk settled before each) and each keeps its median.
Peak RSS of the gateway and meeting_service is read as in `upload` at a small and a large
size: an upload holds at most about one part in memory whatever its size.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import statistics
import time
from collections.abc import AsyncIterator, Iterator

import psutil

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.processes import ServiceProcess
from bench.scenarios.upload import (
    MIB,
    ROUNDS,
    RSS_GROWTH_TOLERANCE,
    WARM_UP_BYTES,
    alternate,
    settle_disk,
    tone_block,
    upload_through_gateway,
)
from meeting_mesh import seaweedfs
from meeting_mesh.seaweedfs import SeaweedFS

BUCKET = "bench-recordings"
PART_BYTES = 8 * MIB  # meeting_service's default `s3_part_bytes`
RSS_LIMIT_MIB = 250


@contextlib.asynccontextmanager
async def _seaweedfs(context: BenchContext) -> AsyncIterator[SeaweedFS]:
    async with seaweedfs.running(context.workdir / "seaweedfs", "bench", BUCKET) as server:
        yield server


async def _direct(server: SeaweedFS, size: int) -> float:
    """Seconds to put `size` bytes into the server as one multipart upload of PART_BYTES."""
    block = tone_block(PART_BYTES)
    async with seaweedfs.s3_client(server) as client:
        key = f"direct/{secrets.token_hex(8)}"
        started = time.perf_counter()
        created = await client.create_multipart_upload(Bucket=BUCKET, Key=key)
        parts = []
        for number, offset in enumerate(range(0, size, PART_BYTES), 1):
            body = block[: min(PART_BYTES, size - offset)]
            response = await client.upload_part(
                Bucket=BUCKET,
                Key=key,
                UploadId=created["UploadId"],
                PartNumber=number,
                Body=body,
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        await client.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=created["UploadId"],
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
        )
        return time.perf_counter() - started


class _CpuMeter:
    """CPU seconds of each process on the path, through the mesh and for the reference.

    The rounds alternate, so the mesh's share is the whole run's less the reference's.
    """

    NAMES = ("gateway", "meeting_service", "s3_server", "bench_client")

    def __init__(
        self, gateway: ServiceProcess, meeting: ServiceProcess, s3_server: psutil.Process
    ) -> None:
        self._gateway = gateway
        self._meeting = meeting
        self._s3 = s3_server
        self._me = psutil.Process()
        self.whole = [0.0] * 4
        self.direct = [0.0] * 4

    def _now(self) -> list[float]:
        s3, me = self._s3.cpu_times(), self._me.cpu_times()
        return [
            self._gateway.cpu_seconds(),
            self._meeting.cpu_seconds(),
            s3.user + s3.system,
            me.user + me.system,
        ]

    @contextlib.contextmanager
    def _counting(self, into: list[float]) -> Iterator[None]:
        before = self._now()
        yield
        for i, (start, end) in enumerate(zip(before, self._now(), strict=True)):
            into[i] += end - start

    def total(self) -> contextlib.AbstractContextManager[None]:
        """Counts the whole run."""
        return self._counting(self.whole)

    def reference(self) -> contextlib.AbstractContextManager[None]:
        """Counts one reference run."""
        return self._counting(self.direct)

    def per_gib(self, gib: float) -> dict[str, float]:
        """Seconds of CPU per GiB of each process, through the mesh and for S3 alone."""
        figures = {}
        for i, name in enumerate(self.NAMES):
            figures[f"cpu_s_per_gib_mesh_{name}"] = round((self.whole[i] - self.direct[i]) / gib, 2)
        for i, name in enumerate(self.NAMES):
            figures[f"cpu_s_per_gib_s3_alone_{name}"] = round(self.direct[i] / gib, 2)
        return figures


def _mib(value: float) -> float:
    return round(value / MIB, 1)


async def upload_s3(context: BenchContext) -> Result:
    """512 MiB (quick: 64 MiB) through the gateway into S3 vs. straight into the server."""
    small, large = (16 * MIB, 64 * MIB) if context.quick else (64 * MIB, 512 * MIB)
    authorization = context.authorization()
    async with _seaweedfs(context) as server:
        settings = {**server.settings(BUCKET), "MESH_S3_PART_BYTES": str(PART_BYTES)}
        fields = {name.removeprefix("MESH_").lower(): value for name, value in settings.items()}
        async with context.meeting_and_gateway(settings=fields) as (meeting, gateway, dsn):
            await upload_through_gateway(gateway, meeting, authorization, WARM_UP_BYTES)
            first, gateway_small, meeting_small = await upload_through_gateway(
                gateway, meeting, authorization, small
            )
            if server.pid is None:
                raise RuntimeError("SeaweedFS was not started here; its CPU cannot be read")
            cpu = _CpuMeter(gateway, meeting, psutil.Process(server.pid))

            async def reference() -> float:
                with cpu.reference():
                    return await _direct(server, large)

            with cpu.total():
                rounds = await alternate(
                    gateway, meeting, authorization, large, reference, lambda: settle_disk(dsn)
                )
    gateway_large, meeting_large = rounds.gateway_peak, rounds.meeting_peak
    cpu_s = cpu.per_gib(ROUNDS * large / 1024**3)
    mesh_cpu = sum(v for k, v in cpu_s.items() if "_mesh_" in k)
    alone_cpu = sum(v for k, v in cpu_s.items() if "_s3_alone_" in k)
    rate = round(large / MIB / statistics.median(rounds.mesh_seconds), 1)
    direct_rate = round(large / MIB / statistics.median(rounds.reference_seconds), 1)
    share = ratio(rate, direct_rate)

    def flat(at_small: int, at_large: int) -> bool:
        return at_large <= at_small * (1 + RSS_GROWTH_TOLERANCE)

    checks = [
        Check("rate vs S3 alone", f"{share}", ">= 0.8", (share or 0) >= 0.8),
        Check(
            "meeting_service peak RSS small/large",
            f"{_mib(meeting_small)}/{_mib(meeting_large)} MiB",
            f"same (within {RSS_GROWTH_TOLERANCE:.0%}) and < {RSS_LIMIT_MIB} MiB",
            flat(meeting_small, meeting_large) and meeting_large < RSS_LIMIT_MIB * MIB,
        ),
        Check(
            "gateway peak RSS small/large",
            f"{_mib(gateway_small)}/{_mib(gateway_large)} MiB",
            f"same (within {RSS_GROWTH_TOLERANCE:.0%}) and < {RSS_LIMIT_MIB} MiB",
            flat(gateway_small, gateway_large) and gateway_large < RSS_LIMIT_MIB * MIB,
        ),
    ]
    return Result(
        name="upload_s3",
        value=rate,
        unit="MiB/s",
        reference=direct_rate,
        ratio=share,
        goal="rate >= 0.8x the same bytes put straight into S3; peak RSS flat across sizes",
        met=all(c.met for c in checks),
        checks=checks,
        details={
            "small_mib": _mib(small),
            "large_mib": _mib(large),
            "part_mib": _mib(PART_BYTES),
            "small_rate_mib_s": round(small / MIB / first.seconds, 1),
            "large_seconds": round(statistics.median(rounds.mesh_seconds), 1),
            "rounds": ROUNDS,
            "s3_only_rate_mib_s": direct_rate,
            "gateway_peak_rss_small_mib": _mib(gateway_small),
            "gateway_peak_rss_large_mib": _mib(gateway_large),
            "meeting_peak_rss_small_mib": _mib(meeting_small),
            "meeting_peak_rss_large_mib": _mib(meeting_large),
            "s3": "SeaweedFS (weed mini) on loopback, sharing the machine's cores",
            **cpu_s,
        },
        limits=(
            f"CPU on {os.cpu_count()} cores: SeaweedFS alone takes {direct_rate} MiB/s of "
            "the same bytes here from one client putting parts back to back, and the "
            f"machine's cores are busy either way; per GiB, the processes used "
            f"{round(alone_cpu, 1)} s of CPU for S3 alone and {round(mesh_cpu, 1)} s "
            "through the mesh (PostgreSQL, one commit per part, not counted), where each "
            "part also crosses HTTP, the gateway, gRPC and the SHA-256 "
            "(`cpu_s_per_gib_*`, by process)."
        ),
    )
