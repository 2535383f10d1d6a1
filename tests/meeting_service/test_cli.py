"""`meeting-mesh meeting-service` and `meeting-mesh migrate` as real processes.

The service process is also where memory is measured: a large upload must not grow it by
more than a small one does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import psutil
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from tests.meeting_service.helpers import create, health_stub, next_event, user
from tests.support.meeting import TEST_JWT_SECRET, auth
from tests.support.postgres import create_database, drop_database

MIB = 1024 * 1024


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    env.update(
        DATABASE_URL=database_url,
        MESH_JWT_SECRET=TEST_JWT_SECRET,
        MESH_DATA_DIR=str(data_dir),
        MESH_LOG_FORMAT="json",
        MESH_GRACE_S="5",
        MESH_HEALTH_INTERVAL_S="0.5",
        MESH_MEETING_METRICS_PORT="0",
    )
    return env


async def _cli(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meeting_mesh.cli",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


class ServiceProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.address = f"127.0.0.1:{port}"


@pytest_asyncio.fixture(scope="module")
async def service_process(
    postgres_admin_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServiceProcess]:
    dsn = await create_database(postgres_admin_dsn, "cli")
    process = await _cli(
        "meeting-service", "--port", "0", env=_env(dsn, tmp_path_factory.mktemp("cli"))
    )
    assert process.stdout is not None
    port = None
    async with asyncio.timeout(60):
        while port is None:
            line = await process.stdout.readline()
            assert line, "the service exited before it started"
            if line.startswith(b"{"):
                record = json.loads(line)
                if record["message"] == "meeting service started":
                    port = int(record["port"])
    drain = asyncio.create_task(_discard(process.stdout))
    try:
        yield ServiceProcess(process, port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        drain.cancel()
        await drain
        await drop_database(postgres_admin_dsn, dsn)


async def _discard(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _serving(channel: grpc.aio.Channel) -> None:
    watch = health_stub(channel).Watch(
        health_pb2.HealthCheckRequest(service="meeting.v1.MeetingService")
    )
    async with asyncio.timeout(60):
        async for answer in watch:
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                return


def _wav_header(data_bytes: int, rate: int = 16_000) -> bytes:
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


async def _upload_generated(
    stub: meeting_service_pb2_grpc.MeetingServiceStub, owner: str, size: int, server: psutil.Process
) -> tuple[meeting_service_pb2.UploadAudioResponse, int]:
    """Uploads a WAV of `size` bytes made on the fly; returns the server's peak RSS seen."""
    meeting = await create(stub, owner)
    header = _wav_header(size - 44)
    block = bytes(range(256)) * (MIB // 256)  # 1 MiB of (noisy) samples, reused
    peak = 0

    async def chunks() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        nonlocal peak
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting.id, content_type="audio/wav", total_size=size
            )
        )
        sent = 0
        first = header + block[: MIB - len(header)]
        while sent < size:
            data = first if sent == 0 else block[: min(MIB, size - sent)]
            yield meeting_service_pb2.UploadAudioRequest(chunk=data)
            sent += len(data)
            peak = max(peak, server.memory_info().rss)

    response = await stub.UploadAudio(chunks(), metadata=auth(owner))
    peak = max(peak, server.memory_info().rss)
    return response, peak


async def test_large_upload_keeps_server_memory_flat(service_process: ServiceProcess) -> None:
    server = psutil.Process(service_process.process.pid)
    owner = user()
    async with grpc.aio.insecure_channel(service_process.address) as channel:
        await _serving(channel)
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        small, small_peak = await _upload_generated(stub, owner, 8 * MIB, server)
        large, large_peak = await _upload_generated(stub, owner, 256 * MIB, server)
    assert small.complete and large.complete
    assert large.stored_size == 256 * MIB
    assert large.meeting.status == meeting_pb2.MEETING_STATUS_QUEUED
    assert large.duration.seconds == (256 * MIB - 44) // 32_000
    # 248 MiB more data may cost a few buffers more, never the recording itself.
    assert large_peak - small_peak < 64 * MIB, (small_peak / MIB, large_peak / MIB)


async def test_sigterm_stops_gracefully(service_process: ServiceProcess) -> None:
    owner = user()
    async with grpc.aio.insecure_channel(service_process.address) as channel:
        await _serving(channel)
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        meeting = await create(stub, owner)
        stream = stub.StreamTranscript(
            meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting.id),
            metadata=auth(owner),
        )
        assert (await next_event(stream)).sequence == 1
        service_process.process.send_signal(signal.SIGTERM)
        # A follower is told to resume elsewhere rather than cut off silently.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stream.read()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "after_sequence=1" in (caught.value.details() or "")
        async with asyncio.timeout(30):
            assert await service_process.process.wait() == 0


async def test_migrate_applies_once_even_when_run_concurrently(
    postgres_admin_dsn: str, tmp_path: Path
) -> None:
    dsn = await create_database(postgres_admin_dsn, "migrate")
    try:
        env = _env(dsn, tmp_path)
        processes = [await _cli("migrate", env=env) for _ in range(2)]
        outputs = [(await p.communicate())[0].decode() for p in processes]
        assert [p.returncode for p in processes] == [0, 0]
        assert sum("applied: 0001_initial.sql" in out for out in outputs) == 1
        assert sum("up to date" in out for out in outputs) == 1
        again = await _cli("migrate", env=env)
        out, _ = await again.communicate()
        assert again.returncode == 0 and b"up to date" in out
    finally:
        await drop_database(postgres_admin_dsn, dsn)


async def test_invalid_settings_are_all_named_at_once(tmp_path: Path) -> None:
    env = _env("postgresql://unused", tmp_path)
    env.update(MESH_DB_POOL_MAX="lots", MESH_MEETING_PORT="99999")
    process = await _cli("meeting-service", env=env)
    out, _ = await process.communicate()
    assert process.returncode == 2
    assert b"MESH_DB_POOL_MAX" in out and b"MESH_MEETING_PORT" in out
