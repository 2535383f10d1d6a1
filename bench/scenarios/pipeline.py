"""`pipeline_overhead`: a recording through the whole mesh against its engines alone.

A two-voice espeak meeting (tests/support/speech.py, repeated to a few minutes; quick: once,
about 27 s) is uploaded through the gateway to a mesh running the real engines (tiny.en)
on one gpu_node behind gpu_proxy, with one job worker. The time is from the upload's
answer to the COMPLETED status arriving on a StreamTranscript call. The reference is the
same engines in one process (`bench/pipeline_engine.py`, same model) on the same decoded
audio with the same requests, fed in the job's 8 s blocks to recognition and again to
diarization, as the node feeds them. Both sides get one explicit thread budget
(`ASR_THREADS` for CTranslate2, `BLAS_THREADS` for numpy's BLAS). Both are warmed up
first (the mesh by a job on the recording's first seconds). Subject and reference
alternate (twice each) and each keeps its best.

Where the difference goes (`PHASES`): status changes and segment events arrive on the
stream as the job goes, so each phase of the mesh (claim, the recording's way in before
the first segment, recognition, the hand-offs between stages, diarization, summary) sits
beside what the engines alone spent on it. The CPU each service used is reported too;
`cpu_ratio` (the mesh's services, PostgreSQL aside, over the reference) is the figure the
machine's other load moves least.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import numpy as np

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.processes import ServiceProcess
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from tests.support.speech import SAMPLE_RATE, make_meeting, write_wav

NAME = "pipeline_overhead"
GOAL_RATIO = 1.10
MODEL = "tiny.en"
# One thread budget for both sides, passed explicitly so neither depends on the
# environment: CTranslate2 on every core, numpy's BLAS on one (the node's default,
# docs/engines.md, "Threads").
ASR_THREADS = 0
BLAS_THREADS = 1
WARM_UP_S = 8.0
STATUS = meeting_pb2.MeetingStatus
# Where the time goes, in the order a job spends it: each phase runs between two moments
# seen on the meeting's StreamTranscript call (a status change, or the first or last
# segment event of a stage), and its reference is what the engines alone spent on the
# same step ("" where they spend nothing).
PHASES = (
    ("claim", "upload answered -> TRANSCRIBING", "the worker's claim and first status write"),
    (
        "audio_in",
        "TRANSCRIBING -> first final segment",
        "decode and transfer of the recording (batch recognition starts once it is all "
        "there), the engine's first segment, its write",
    ),
    ("recognition", "first -> last final segment", "the engine, with the segments' writes"),
    (
        "handoff_diarization",
        "last final segment -> DIARIZING",
        "the last writes made durable, the segments read back, the stage's commit",
    ),
    (
        "diarization",
        "DIARIZING -> labelled segments",
        "the second decode and transfer, the engine, the voices' and labels' writes",
    ),
    ("handoff_summary", "labelled segments -> SUMMARIZING", "the stage's commit"),
    (
        "summary",
        "SUMMARIZING -> COMPLETED",
        "segments read back, the engine, the summary's and the completion's commit",
    ),
)


def recording(directory: Path, seconds: float) -> tuple[Path, Path]:
    """The espeak meeting repeated to at least `seconds`, and its first seconds alone.

    Returns:
        (the recording's WAV, the warm-up WAV).
    """
    meeting = make_meeting(directory / "speech")
    repeats = max(1, int(np.ceil(seconds / meeting.duration_s)))
    whole = directory / "pipeline.wav"
    write_wav(whole, np.tile(meeting.audio, repeats))
    warm = directory / "pipeline-warm-up.wav"
    write_wav(warm, meeting.audio[: int(WARM_UP_S * SAMPLE_RATE)])
    return whole, warm


async def reference(wav: Path) -> dict[str, float]:
    """The engines alone on `wav`, in a fresh process (figures of `bench.pipeline_engine`)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.pipeline_engine",
        str(wav),
        "--model",
        MODEL,
        "--threads",
        str(ASR_THREADS),
        "--blas-threads",
        str(BLAS_THREADS),
        "--warm-up-s",
        str(WARM_UP_S),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MESH_LOG_LEVEL": "WARNING"},
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench.pipeline_engine failed:\n{err.decode()[-2000:]}")
    figures: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


@dataclass
class Timeline:
    """When each moment of a job arrived on its StreamTranscript call (monotonic seconds).

    Attributes:
        statuses: Each status change, by status.
        first_final: The first final segment.
        last_final: The last final segment before DIARIZING.
        labelled: The first segment event after DIARIZING (the labels, one commit).
        segments: Final segments seen.
    """

    statuses: dict[int, float] = field(default_factory=dict)
    first_final: float | None = None
    last_final: float | None = None
    labelled: float | None = None
    segments: int = 0

    def phases(self, uploaded_at: float) -> dict[str, float]:
        """Seconds of each of `PHASES`; a moment that never came takes the one before."""
        moments = [
            uploaded_at,
            self.statuses.get(STATUS.MEETING_STATUS_TRANSCRIBING),
            self.first_final,
            self.last_final,
            self.statuses.get(STATUS.MEETING_STATUS_DIARIZING),
            self.labelled,
            self.statuses.get(STATUS.MEETING_STATUS_SUMMARIZING),
            self.statuses.get(STATUS.MEETING_STATUS_COMPLETED),
        ]
        known: list[float] = []
        for moment in moments:
            known.append(moment if moment is not None else known[-1])
        return {name: known[i + 1] - known[i] for i, (name, _, _) in enumerate(PHASES)}


@dataclass
class MeshRun:
    """One recording through the mesh.

    Attributes:
        total_s: Upload answered to COMPLETED arriving.
        phases: Seconds of each of `PHASES`.
        segments: Final segments stored.
        cpu_s: CPU seconds each service used during the run.
    """

    total_s: float
    phases: dict[str, float]
    segments: int
    cpu_s: dict[str, float] = field(default_factory=dict)


async def _follow(
    stub: meeting_service_pb2_grpc.MeetingServiceStub,
    meeting_id: str,
    authorization: str,
    opened: asyncio.Event,
) -> Timeline:
    """Follows the meeting's events until COMPLETED."""
    timeline = Timeline()
    finals: set[int] = set()
    call = stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id),
        metadata=(("authorization", authorization),),
    )
    async for response in call:
        opened.set()
        if not response.HasField("event"):
            continue
        now = time.monotonic()
        event = response.event
        diarizing = STATUS.MEETING_STATUS_DIARIZING in timeline.statuses
        if event.HasField("segment") and event.segment.final:
            finals.add(event.segment.index)
            if diarizing:
                timeline.labelled = timeline.labelled or now
            else:
                timeline.first_final = timeline.first_final or now
                timeline.last_final = now
        if event.HasField("status_change"):
            status = event.status_change.status
            timeline.statuses.setdefault(status, now)
            if status == STATUS.MEETING_STATUS_FAILED:
                raise RuntimeError(f"the job failed: {event.status_change.reason}")
            if status == STATUS.MEETING_STATUS_COMPLETED:
                call.cancel()
                break
    timeline.segments = len(finals)
    return timeline


async def run_through_mesh(
    http: aiohttp.ClientSession,
    gateway: ServiceProcess,
    meeting: ServiceProcess,
    authorization: str,
    wav: Path,
    services: list[ServiceProcess],
) -> MeshRun:
    """Uploads `wav` to a new meeting and waits for COMPLETED."""
    headers = {"Authorization": authorization}
    async with http.post(
        f"{gateway.url}/v1/meetings", json={"title": "pipeline"}, headers=headers
    ) as created:
        created.raise_for_status()
        meeting_id = str((await created.json())["meeting"]["id"])
    body = await asyncio.to_thread(wav.read_bytes)
    async with grpc.aio.insecure_channel(meeting.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        opened = asyncio.Event()
        following = asyncio.create_task(_follow(stub, meeting_id, authorization, opened))
        await asyncio.wait_for(opened.wait(), 30)
        cpu_before = {s.role: s.cpu_seconds() for s in services}
        async with http.put(
            f"{gateway.url}/v1/meetings/{meeting_id}/audio",
            data=body,
            headers={**headers, "Content-Type": "audio/wav"},
        ) as uploaded:
            answer = await uploaded.json()
            if uploaded.status != 200 or not answer.get("complete"):
                raise RuntimeError(f"the upload failed: {uploaded.status} {answer}")
        uploaded_at = time.monotonic()
        timeline = await asyncio.wait_for(following, 1800)
    cpu = {s.role: round(s.cpu_seconds() - cpu_before[s.role], 2) for s in services}
    phases = timeline.phases(uploaded_at)
    return MeshRun(sum(phases.values()), phases, timeline.segments, cpu)


async def pipeline_overhead(context: BenchContext) -> Result:
    """Upload answered to COMPLETED through the mesh, over the engines alone."""
    seconds, rounds = (20.0, 2) if context.quick else (180.0, 2)
    wav, warm_wav = await asyncio.to_thread(recording, context.workdir / "pipeline", seconds)
    authorization = context.authorization()
    pki = context.pki()
    references: list[dict[str, float]] = []
    runs: list[MeshRun] = []
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            context.service(
                "gpu_node",
                pki_dir=str(pki),
                engine="whisper",
                asr_model=MODEL,
                asr_threads=ASR_THREADS,
                blas_threads=BLAS_THREADS,
            )
        )
        proxy = await stack.enter_async_context(
            context.service("gpu_proxy", pki_dir=str(pki), nodes=[node.address])
        )
        meeting, gateway, _ = await stack.enter_async_context(
            context.meeting_and_gateway(
                gpu_proxy_target=proxy.address, pki_dir=str(pki), pipeline_workers=1
            )
        )
        http = await stack.enter_async_context(aiohttp.ClientSession())
        services = [node, proxy, meeting, gateway]
        await run_through_mesh(http, gateway, meeting, authorization, warm_wav, services)
        for _ in range(rounds):
            references.append(await reference(wav))
            runs.append(
                await run_through_mesh(http, gateway, meeting, authorization, wav, services)
            )
    best_ref = min(references, key=lambda r: r["total_s"])
    best = min(runs, key=lambda r: r.total_s)
    value, reference_s = round(best.total_s, 2), round(best_ref["total_s"], 2)
    share = ratio(value, reference_s)
    alone = {
        "claim": 0.0,
        "audio_in": best_ref["decode_s"] + best_ref["first_segment_s"],
        "recognition": best_ref["recognition_s"] - best_ref["first_segment_s"],
        "handoff_diarization": 0.0,
        "diarization": best_ref["diarization_s"],
        "handoff_summary": 0.0,
        "summary": best_ref["summary_s"],
    }
    details: dict[str, object] = {
        "audio_s": round(best_ref["audio_s"], 1),
        "model": MODEL,
        "asr_threads": ASR_THREADS or os.cpu_count(),
        "blas_threads": BLAS_THREADS,
        "rounds": rounds,
        "segments_mesh": best.segments,
        "segments_alone": int(best_ref["segments"]),
        "speakers_alone": int(best_ref["speakers"]),
        "mesh_runs_s": [round(r.total_s, 2) for r in runs],
        "alone_runs_s": [round(r["total_s"], 2) for r in references],
        "alone_cpu_s": round(best_ref["cpu_s"], 2),
        **{f"cpu_s_{role}": cpu for role, cpu in best.cpu_s.items()},
        "cpu_ratio": ratio(round(sum(best.cpu_s.values()), 2), round(best_ref["cpu_s"], 2)),
    }
    for phase, span, _ in PHASES:
        details[f"{phase}_mesh_s"] = round(best.phases[phase], 3)
        details[f"{phase}_alone_s"] = round(alone[phase], 3)
        details[f"{phase}_added_s"] = round(best.phases[phase] - alone[phase], 3)
        details[f"{phase}_span"] = span
    checks = [
        Check(
            "time ratio",
            f"{share}",
            f"<= {GOAL_RATIO}",
            share is not None and share <= GOAL_RATIO,
        ),
        Check(
            "same final segments",
            f"{best.segments}/{int(best_ref['segments'])}",
            "equal",
            best.segments == int(best_ref["segments"]),
        ),
    ]
    added = {phase: round(best.phases[phase] - alone[phase], 2) for phase, _, _ in PHASES}
    where = "; ".join(f"{phase}: {what}" for phase, _, what in PHASES)
    return Result(
        name=NAME,
        value=value,
        unit="s (upload answered to COMPLETED)",
        reference=reference_s,
        ratio=share,
        goal=f"<= {GOAL_RATIO}x the engines alone",
        met=all(c.met for c in checks),
        checks=checks,
        details=details,
        limits=(
            "CPU on 2 cores shared with the machine's other load: the engines use every core "
            f"in both runs (the node's CPU {best.cpu_s.get('gpu_node')} s against the "
            f"reference's {round(best_ref['cpu_s'], 2)} s), and in the mesh meeting_service, "
            "gpu_proxy, the gateway and PostgreSQL take theirs from the same cores "
            f"(cpu_ratio {details['cpu_ratio']}); their wall times swing with that load by "
            "more than the mesh's whole cost. On the critical path the mesh adds the claim, "
            "commits of a few ms each, and in `audio_in` the recording's decode and transfer, "
            "which batch recognition waits for in full before its first window. Seconds "
            f"added per phase: {added} ({where})."
        ),
    )
