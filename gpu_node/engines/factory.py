"""Chooses the engines a node runs: the mock, the real ones, or whichever is installed.

Imports are lazy: the mock path never loads CTranslate2, onnxruntime or model weights.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from gpu_node.engines.base import DiarizationEngine, RecognitionEngine, SummarizationEngine
from mesh_common.logging import logger


@dataclass(frozen=True)
class Engines:
    """The three engines one node serves with."""

    recognition: RecognitionEngine
    diarization: DiarizationEngine
    summarization: SummarizationEngine


class EngineUnavailableError(RuntimeError):
    """The chosen engine cannot be loaded here (not installed, or failed to load)."""


def whisper_available() -> bool:
    """Returns whether the real engines can be imported (without importing them)."""
    return (
        importlib.util.find_spec("faster_whisper") is not None
        and importlib.util.find_spec("gpu_node.engines.real") is not None
    )


def create_engines(name: str) -> Engines:
    """Creates the engines for a node.

    Args:
        name: "mock"; "whisper" (the real engines, configured by their own environment
            variables); or "auto": whisper when it is installed, else mock.

    Returns:
        The engines.

    Raises:
        EngineUnavailableError: "whisper" was asked for and cannot be loaded.
        ValueError: The name is none of the above.
    """
    if name == "auto":
        name = "whisper" if whisper_available() else "mock"
        logger.info("engine auto-selected: {}", name)
    if name == "mock":
        from gpu_node.engines.mock import (
            MockDiarizationEngine,
            MockRecognitionEngine,
            MockSummarizationEngine,
        )

        return Engines(MockRecognitionEngine(), MockDiarizationEngine(), MockSummarizationEngine())
    if name == "whisper":
        if not whisper_available():
            raise EngineUnavailableError(
                "the whisper engine needs the 'engines' extra (faster-whisper) and "
                "gpu_node.engines.real"
            )
        real = importlib.import_module("gpu_node.engines.real")
        recognition, diarization, summarization = real.create_real_engines()
        return Engines(recognition, diarization, summarization)
    raise ValueError(f"unknown engine {name!r}: expected mock, whisper or auto")
