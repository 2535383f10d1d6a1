"""The real engines of gpu_node, created once per process from `RealEngineSettings`.

Importing this module is cheap; faster-whisper, CTranslate2 and yake are imported only when
`create_real_engines()` runs, so a node started with the mock engine never loads them.
"""

from __future__ import annotations

from gpu_node.engines.base import DiarizationEngine, RecognitionEngine, SummarizationEngine
from gpu_node.engines.live_first import LiveFirst
from gpu_node.engines.real_settings import RealEngineSettings
from gpu_node.engines.speakers import ResemblyzerDiarizationEngine
from gpu_node.engines.summaries import FallbackSummarizer, OpenAICompatibleSummarizer
from gpu_node.engines.summaries_extractive import ExtractiveSummarizer
from gpu_node.engines.voice_encoder import VoiceEncoder
from gpu_node.engines.whisper import LiveOptions, WhisperRecognitionEngine
from gpu_node.engines.whisper_models import (
    choose_placement,
    load_model,
    model_label,
    resolve_model,
)
from mesh_common.logging import logger
from mesh_common.settings import load

__all__ = ["RealEngineSettings", "create_real_engines"]


def _limit_blas_threads(threads: int) -> None:
    """Caps the threads of the BLAS libraries loaded in the process (numpy's).

    The voice encoder's matrices are small (a few rows by 256), so BLAS threads beyond one
    spend their time waiting for each other; on a loaded CPU they also spin against
    CTranslate2's own threads (docs/engines.md, "Threads").

    Args:
        threads: Threads per BLAS call; 0 keeps the libraries' default.
    """
    if threads == 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def create_real_engines(
    **overrides: object,
) -> tuple[RecognitionEngine, DiarizationEngine, SummarizationEngine]:
    """Loads the models and builds the three engines.

    Everything is loaded here, before the node serves, so that a wrong setting or a missing
    model fails the start rather than the first call.

    Args:
        **overrides: `RealEngineSettings` fields that win over the environment (command-line
            flags); None values are ignored.

    Returns:
        Recognition (faster-whisper), diarization (resemblyzer in numpy) and summarization
        (an LLM server when `summary_llm_url` is set, with extractive summaries as fallback).

    Raises:
        SettingsError: A setting is invalid, the model is unknown or missing, or CUDA was
            asked for without a GPU.
    """
    settings = load(RealEngineSettings, **overrides)
    _limit_blas_threads(settings.blas_threads)
    placement = choose_placement(
        settings.asr_device,
        settings.asr_compute_type,
        settings.asr_threads,
        settings.asr_max_concurrency,
        settings.asr_live_max_concurrency,
    )
    model = load_model(resolve_model(settings.asr_model, settings.models_dir()), placement)
    live_first = LiveFirst(settings.live_first_max_wait_s)
    recognition = WhisperRecognitionEngine(
        model,
        model_label(settings.asr_model),
        max_concurrency=placement.workers,
        live_concurrency=placement.live_workers,
        beam_size=settings.asr_beam_size,
        batch_window_s=settings.asr_batch_window_s,
        live=LiveOptions(
            silence_s=settings.asr_live_silence_s,
            max_utterance_s=settings.asr_live_max_utterance_s,
            partial_interval_s=settings.asr_live_partial_interval_s,
        ),
        live_first=live_first,
    )
    diarization = ResemblyzerDiarizationEngine(
        VoiceEncoder(),
        max_speakers=settings.diarization_max_speakers,
        min_silhouette=settings.diarization_min_silhouette,
        max_concurrency=placement.workers,
        live_first=live_first,
    )
    extractive = ExtractiveSummarizer(settings.summary_max_sentences)
    summarization: SummarizationEngine = extractive
    if settings.summary_llm_url:
        summarization = FallbackSummarizer(
            OpenAICompatibleSummarizer(
                settings.summary_llm_url,
                settings.summary_llm_model,
                api_key=settings.summary_llm_api_key,
                timeout_s=settings.summary_llm_timeout_s,
                default_sentences=settings.summary_max_sentences,
            ),
            extractive,
        )
    logger.info(
        "real engines ready",
        recognition=recognition.name,
        device=placement.device,
        compute_type=placement.compute_type,
        threads=placement.threads,
        blas_threads=settings.blas_threads,
        concurrency=placement.workers,
        diarization=diarization.name,
        summarization=summarization.name,
    )
    return recognition, diarization, summarization
