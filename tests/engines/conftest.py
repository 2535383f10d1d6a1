"""Session fixtures: the synthetic meeting, the real engines and one batch transcript."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import all_segments
from tests.support.engines import Engines, chunked
from tests.support.speech import Recording, make_meeting


@pytest.fixture(scope="session")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    return make_meeting(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def engines(model_cache: Path) -> Engines:
    from gpu_node.engines.real import create_real_engines

    return create_real_engines(
        asr_model="tiny.en", asr_device="cpu", model_cache_dir=model_cache, summary_llm_url=""
    )


@pytest_asyncio.fixture(scope="session")
async def batch_segments(
    engines: Engines, meeting: Recording
) -> Sequence[gpu_pb2.RecognizedSegment]:
    recognition = engines[0]
    config = gpu_pb2.RecognitionConfig(mode=gpu_pb2.RECOGNITION_MODE_BATCH)
    batches = recognition.recognize(config, chunked(meeting.audio))
    return await all_segments(batches)
