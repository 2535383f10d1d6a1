"""Load from h2load (nghttp2, C): HTTP/1.1 for the REST routes, HTTP/2 for raw gRPC.

One tool drives both the subject and its reference, so neither side gets a faster client.
h2load runs single-threaded in its own process; its CPU use is reported with each run so a
saturated generator would show. Latency percentiles come from its per-request log.
"""

from __future__ import annotations

import asyncio
import re
import resource
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message


class LoadGeneratorMissing(RuntimeError):
    """h2load is not installed (Debian: `apt-get install -y nghttp2-client`)."""


@dataclass(frozen=True)
class LoadResult:
    """What one h2load run measured.

    Attributes:
        requests: Successful (2xx) requests in the measured period.
        failed: Requests that failed or answered non-2xx.
        rps: Successful requests per second.
        p50_ms: Median latency.
        p99_ms: 99th percentile latency.
        client_cpu: CPU seconds h2load used per wall second (1.0 = one core saturated).
    """

    requests: int
    failed: int
    rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float


def grpc_frame(message: Message) -> bytes:
    """The body of a unary gRPC request: uncompressed flag, length, message."""
    payload = message.SerializeToString()
    return struct.pack(">BI", 0, len(payload)) + payload


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def h2load_path() -> str:
    """Returns h2load's path.

    Raises:
        LoadGeneratorMissing: It is not installed.
    """
    path = shutil.which("h2load")
    if path is None:
        raise LoadGeneratorMissing("h2load not found: apt-get install -y nghttp2-client")
    return path


async def h2load(
    url: str,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    headers: dict[str, str],
    grpc_body: bytes | None = None,
) -> LoadResult:
    """Drives `url` at fixed concurrency for a fixed time.

    Args:
        url: The URL (http://host:port/path).
        concurrency: Requests in flight at any moment.
        duration_s: Measured period.
        warmup_s: Unmeasured period before it.
        headers: Request headers.
        grpc_body: For gRPC: the framed request; the call is then made over HTTP/2 on
            4 connections with concurrency/4 streams each. Without it, HTTP/1.1 GETs on
            `concurrency` keep-alive connections.

    Returns:
        The measurement.

    Raises:
        RuntimeError: h2load failed.
    """
    with tempfile.TemporaryDirectory(prefix="bench-h2load-") as tmp:
        log = Path(tmp) / "requests.tsv"
        args = [
            h2load_path(),
            "-D",
            f"{round(duration_s * 1000)}ms",
            f"--warm-up-time={round(warmup_s * 1000)}ms",
            f"--log-file={log}",
            "-t",
            "1",
        ]
        for name, value in headers.items():
            args += ["-H", f"{name}: {value}"]
        if grpc_body is None:
            args += ["--h1", "-c", str(concurrency), "-m", "1"]
        else:
            body = Path(tmp) / "body.bin"
            body.write_bytes(grpc_body)
            connections = min(4, concurrency)
            args += ["-c", str(connections), "-m", str(max(1, concurrency // connections))]
            args += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = await asyncio.create_subprocess_exec(
            *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        text = output.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"h2load failed ({process.returncode}):\n{text[-2000:]}")
        latencies, failed = _read_log(log)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    match = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    if match is None:
        raise RuntimeError(f"unexpected h2load output:\n{text[-2000:]}")
    elapsed = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    return LoadResult(
        requests=len(latencies),
        failed=failed,
        rps=round(len(latencies) / elapsed, 1),
        p50_ms=round(percentile(latencies, 50), 2),
        p99_ms=round(percentile(latencies, 99), 2),
        client_cpu=round(cpu / (elapsed + warmup_s), 2),
    )


def _read_log(log: Path) -> tuple[list[float], int]:
    latencies: list[float] = []
    failed = 0
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        if parts[1].startswith("2"):
            latencies.append(int(parts[2]) / 1000)
        else:
            failed += 1
    return latencies, failed
