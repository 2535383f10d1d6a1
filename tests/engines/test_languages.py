"""Honest languages with the real multilingual model: a German recording with no language
asked for is detected, stored and shown as German; a language no node knows is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_service_pb2
from tests.engines import ENGINES
from tests.support.engine_mesh import WITHIN_S, Stub, create, process, run_engine_mesh, transcript
from tests.support.meeting import auth
from tests.support.speech import speak

pytestmark = ENGINES

USER = "sprachen"
GERMAN = [
    (("-v", "de", "-s", "150"), "Guten Morgen zusammen, wir besprechen heute das Budget."),
    (("-v", "de+f3", "-s", "150"), "Die Kosten für das Marketing sind wieder gestiegen."),
]


@pytest_asyncio.fixture(scope="module")
async def stub(
    model_cache: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stub]:
    """The mesh with a node serving the multilingual `base` model."""
    from gpu_node.engines.real import create_real_engines

    engines = create_real_engines(
        asr_model="base", asr_device="cpu", model_cache_dir=model_cache, summary_llm_url=""
    )
    async with run_engine_mesh(engines, database_url, tmp_path_factory.mktemp("mesh")) as (
        meeting_stub,
        _,
    ):
        yield meeting_stub


async def test_a_german_recording_is_detected_and_stored_as_german(
    stub: Stub, tmp_path: Path
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create(stub, USER, language="xx")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'xx'" in (refused.value.details() or "")
    assert "de, " in (refused.value.details() or "")
    assert (await create(stub, USER, language="de")).language == "de"

    meeting = await create(stub, USER)
    await process(stub, USER, meeting.id, speak(GERMAN, tmp_path))
    got = await stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=meeting.id),
        metadata=auth(USER),
        timeout=WITHIN_S,
    )
    assert (got.meeting.language, got.meeting.detected_language) == ("", "de")
    segments = (await transcript(stub, USER, meeting.id)).segments
    assert segments and {s.language for s in segments} == {"de"}
