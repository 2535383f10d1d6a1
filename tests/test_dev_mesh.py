"""`meeting-mesh dev` as a newcomer runs it: a subprocess in an empty working directory.

It starts the whole mesh (embedded PostgreSQL, certificates and secret in `.mesh/`,
gpu_node with the real engine when installed, gpu_proxy, meeting_service, gateway), prints
its URLs; `meeting-mesh token` gives a token it accepts; a short spoken recording uploaded
through the REST API becomes a transcript followed over SSE to COMPLETED; SIGTERM (or
Ctrl-C) then stops everything, the command exits 0 and no process it started is left,
PostgreSQL included. A second start on the same directory reuses what the first created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from meeting_mesh.client import SseEvent, parse_sse
from meeting_mesh.dev import DEV_BUCKET
from mesh_common.ports import free_ports
from tests.meeting_service.helpers import make_wav
from tests.support.meeting import make_token
from tests.support.processes import left_running
from tests.support.secrets import register_secret
from tests.support.speech import SAMPLE_RATE, VOICES, normalise_words, tools_missing

pytestmark = pytest.mark.skipif(bool(tools_missing()), reason="needs espeak-ng and sox")

# Bounds, not timings: a cold start initialises PostgreSQL and loads the ASR model.
START_WITHIN = 240.0
PROCESS_WITHIN = 180.0
STOP_WITHIN = 90.0
CALL_WITHIN = 30.0
SPOKEN = "Good morning everyone, let's review the quarterly budget."
_FINAL = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}


def _command() -> list[str]:
    """`meeting-mesh`: the console script of this environment, as `uv run` would find it."""
    script = Path(sys.executable).with_name("meeting-mesh")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "meeting_mesh.cli"]


def _environment() -> dict[str, str]:
    """This environment without any mesh configuration, as on a newcomer's machine."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MESH_") and key != "DATABASE_URL"
    }
    # The Prometheus endpoints have fixed default ports too; CI may have them taken.
    for service in ("MEETING", "GPU_PROXY", "GPU_NODE"):
        env[f"MESH_{service}_METRICS_PORT"] = "0"
    return env


@pytest.fixture
def workdir() -> Iterator[Path]:
    """An empty working directory, outside pytest's tmp_path: as root, the embedded
    PostgreSQL runs as another user, and pytest resets /tmp/pytest-of-root to 0700."""
    path = Path(tempfile.mkdtemp(prefix="mesh-dev-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def speak(text: str, path: Path) -> Path:
    """Writes `text` spoken by espeak-ng as a 16 kHz mono WAV file."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(
        ["espeak-ng", *VOICES["alex"], "-w", str(raw), text], check=True, capture_output=True
    )
    subprocess.run(
        ["sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class DevMesh:
    """A running `meeting-mesh dev` and what it printed."""

    process: asyncio.subprocess.Process
    cwd: Path
    gateway_url: str
    stdout: list[str]
    stderr_path: Path
    _reader: asyncio.Task[None]
    watched: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.cwd / ".mesh"

    def output(self) -> str:
        """Everything it printed so far, for failure messages."""
        return "".join(self.stdout) + self.stderr_path.read_text(errors="replace")[-4000:]

    def watch(self) -> None:
        """Remembers every process the mesh runs now: its children, their children, and
        the PostgreSQL server, which pg_ctl detaches into a session of its own."""
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                self.watched[proc.pid] = proc
        pid_file = self.data_dir / "postgres" / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, psutil.NoSuchProcess):
            postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
            self.watched[postmaster.pid] = postmaster
            for proc in postmaster.children(recursive=True):
                self.watched[proc.pid] = proc

    def token(self, user: str) -> str:
        """`meeting-mesh token --user USER`, run where the mesh runs."""
        done = subprocess.run(
            [*_command(), "token", "--user", user],
            cwd=self.cwd,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=CALL_WITHIN,
            check=True,
        )
        return done.stdout.strip()

    async def stop(self, sig: signal.Signals) -> int:
        """Sends `sig` as a terminal would (to the command's process group); returns its
        exit status."""
        self.watch()
        os.killpg(self.process.pid, sig)
        async with asyncio.timeout(STOP_WITHIN):
            return await self.process.wait()


@contextlib.asynccontextmanager
async def dev_mesh(cwd: Path, *args: str) -> AsyncIterator[DevMesh]:
    """Starts `meeting-mesh dev [args]` in `cwd` on free ports and waits for its banner.

    The block must stop it (`DevMesh.stop`); if it does not (a failed assertion), the
    mesh is killed on the way out so that nothing outlives the test.
    """
    gateway, meeting, proxy, node = free_ports(4)
    stderr_path = cwd / "dev.stderr.log"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *_command(),
            "dev",
            f"--gateway-port={gateway}",
            f"--meeting-port={meeting}",
            f"--gpu-proxy-port={proxy}",
            f"--gpu-node-port={node}",
            *args,
            cwd=cwd,
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, as a shell job would have
        )
    lines: list[str] = []
    ready = asyncio.Event()
    assert process.stdout is not None
    stdout = process.stdout

    async def read() -> None:
        # Drained to the end so that the mesh never blocks on a full pipe.
        async for raw in stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if line.strip().startswith("Stop with Ctrl-C"):
                ready.set()

    reader = asyncio.ensure_future(read())
    url = f"http://127.0.0.1:{gateway}"
    mesh = DevMesh(process, cwd, url, lines, stderr_path, reader)
    waits = {asyncio.ensure_future(process.wait()), asyncio.ensure_future(ready.wait())}
    try:
        async with asyncio.timeout(START_WITHIN):
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        assert ready.is_set(), f"meeting-mesh dev exited {process.returncode}:\n{mesh.output()}"
        mesh.watch()
        yield mesh
    finally:
        for wait in waits:
            wait.cancel()
        # Whatever a failed test left behind goes, so that nothing outlives it.
        if process.returncode is None:
            mesh.watch()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        for proc in mesh.watched.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        reader.cancel()


async def _follow(http: aiohttp.ClientSession, meeting_id: str) -> list[SseEvent]:
    events: list[SseEvent] = []
    async with (
        asyncio.timeout(PROCESS_WITHIN),
        http.get(f"/v1/meetings/{meeting_id}/events") as response,
    ):
        assert response.status == 200, await response.text()
        async for event in parse_sse(response.content):
            events.append(event)
            if event.data.get("statusChange", {}).get("status") in _FINAL:
                break
    return events


def _session(mesh: DevMesh, token: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        mesh.gateway_url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CALL_WITHIN),
    )


async def _json(response: aiohttp.ClientResponse, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def test_dev_mesh_transcribes_an_upload_stops_on_sigterm_and_restarts_on_its_data(
    workdir: Path,
) -> None:
    wav = speak(SPOKEN, workdir / "hello.wav")
    async with dev_mesh(workdir) as mesh:
        banner = "".join(mesh.stdout)
        assert mesh.gateway_url in banner
        assert "meeting-mesh token --user" in banner
        assert "speech           whisper:tiny.en, languages: en;" in banner
        assert (mesh.data_dir / "postgres" / "PG_VERSION").exists()
        # The console link signs its user in: the token is in the fragment, not the query.
        console = re.search(r"console\s+(\S+)/#token=(\S+)", banner)
        assert console is not None and console[1] == mesh.gateway_url
        async with _session(mesh, register_secret(console[2])) as http:
            async with http.get("/") as r:
                assert "/console/app.js" in await r.text()
            async with http.get("/v1/meetings") as r:
                assert r.status == 200

        token = mesh.token("newcomer")
        async with _session(mesh, token) as http:
            async with http.post("/v1/meetings", json={"title": "dev mesh"}) as r:
                meeting = (await _json(r, 201))["meeting"]
            async with http.put(
                f"/v1/meetings/{meeting['id']}/audio",
                data=wav.read_bytes(),
                headers={"Content-Type": "audio/wav"},
            ) as r:
                assert (await _json(r, 200))["complete"] is True
            events = await _follow(http, meeting["id"])
            async with http.get(f"/v1/meetings/{meeting['id']}/transcript") as r:
                transcript = await _json(r, 200)
            # A token the dev mesh did not sign is refused.
            async with http.get(
                "/v1/meetings", headers={"Authorization": f"Bearer {make_token('newcomer')}"}
            ) as r:
                assert r.status == 401

        assert await mesh.stop(signal.SIGTERM) == 0, mesh.output()
        assert left_running(mesh.watched.values(), mesh.data_dir) == []
        assert "meeting-mesh dev: stopped" in mesh.output()

    status = events[-1].data["statusChange"]
    assert status["status"] == "MEETING_STATUS_COMPLETED", status
    assert any(e.event == "segment" for e in events)
    heard = normalise_words(" ".join(s["text"] for s in transcript["segments"]))
    assert {"morning", "quarterly", "budget"} <= set(heard), heard

    # Started again in the same directory, it reuses what the first run created (the
    # secret, the certificates, the database): the token still works, the meeting is
    # there. Then Ctrl-C, as a terminal sends it, stops it as cleanly.
    async with dev_mesh(workdir) as again:
        async with (
            _session(again, token) as http,
            http.get(f"/v1/meetings/{meeting['id']}/transcript") as r,
        ):
            assert await _json(r, 200) == transcript
        assert await again.stop(signal.SIGINT) == 0, again.output()
        assert left_running(again.watched.values(), again.data_dir) == []
        assert "meeting-mesh dev: stopped" in again.output()


async def test_dev_mesh_with_s3_keeps_recordings_there_and_stops_everything_when_one_dies(
    workdir: Path,
) -> None:
    (s3_port,) = free_ports(1)
    audio = make_wav(1.0)
    # The mock engine: which engine runs plays no part here, and it starts at once.
    async with dev_mesh(workdir, "--engine=mock", "--storage=s3", f"--s3-port={s3_port}") as mesh:
        assert f"S3 http://127.0.0.1:{s3_port}" in "".join(mesh.stdout)
        async with _session(mesh, mesh.token("s3-user")) as http:
            async with http.post("/v1/meetings", json={"title": "in s3"}) as r:
                meeting = (await _json(r, 201))["meeting"]
            async with http.put(
                f"/v1/meetings/{meeting['id']}/audio",
                data=audio,
                headers={"Content-Type": "audio/wav"},
            ) as r:
                assert (await _json(r, 200))["complete"] is True
        assert await _object(mesh, s3_port, f"recordings/{meeting['id']}") == audio

        service = next(
            p for p in mesh.watched.values() if "meeting-service" in " ".join(p.cmdline())
        )
        service.kill()
        async with asyncio.timeout(STOP_WITHIN):
            code = await mesh.process.wait()
        assert code == 1, mesh.output()
        # meeting-service had no chance to stop its PostgreSQL; the dev command did, and
        # SeaweedFS went with the other children.
        assert left_running(mesh.watched.values(), mesh.data_dir) == []
    assert "meeting-service exited" in mesh.output()


async def _object(mesh: DevMesh, s3_port: int, key: str) -> bytes:
    """An object of the dev mesh's bucket, read with the identity it made."""
    secret = (mesh.data_dir / "seaweedfs" / "secret").read_text()
    async with get_session().create_client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{s3_port}",
        region_name="us-east-1",
        aws_access_key_id="meeting-mesh-dev",
        aws_secret_access_key=secret,
        config=AioConfig(s3={"addressing_style": "path"}),
    ) as client:
        response = await client.get_object(Bucket=DEV_BUCKET, Key=key)
        async with response["Body"] as body:
            data: bytes = await body.read()
            return data
