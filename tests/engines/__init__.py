"""Tests of gpu_node's real engines (offline, CPU; need the `engines` extra)."""

import importlib.util

import pytest

ENGINES = [
    pytest.mark.engines,
    pytest.mark.skipif(
        importlib.util.find_spec("faster_whisper") is None,
        reason="faster-whisper is not installed (install the `engines` extra)",
    ),
]
