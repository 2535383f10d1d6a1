"""A view of a loaded Whisper model whose encoder sees about as much audio as it is given.

Whisper's encoder always reads a 30 s window: faster-whisper pads a shorter clip with
zero features up to 3,000 frames, so a 3 s utterance costs as much encoding as 30 s of
speech, and the encoder is most of a short decode's work. CTranslate2's encoder takes any
number of frames up to 3,000, so the view cuts the padding off before encoding: it keeps
the content and one more second, and never less than `min_s`. With only a few seconds of
context tiny.en starts repeating its sentence (docs/engines.md, "Live recognition").
Decoding, word timings, VAD and language detection are faster-whisper's own, on the
shorter encoder output.

The view shares the model's weights, workers and tokenizer; only `encode` differs.
Importing this module loads faster-whisper, so only code that already holds a model
imports it.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

# Frames per second of Whisper's log-mel features (10 ms hop).
FRAMES_PER_S = 100


def content_frames(features: np.ndarray) -> int:
    """Frames up to the last one that is not padding (faster-whisper pads with exact zeros).

    A real log-mel frame is never all zeros: even digital silence reads -1.5 after
    Whisper's normalisation.
    """
    flat = features.reshape(-1, features.shape[-1])
    used = np.flatnonzero(np.any(flat != 0, axis=0))
    return int(used[-1]) + 1 if len(used) else 0


def short_window(model: WhisperModel, min_s: float) -> WhisperModel:
    """Returns a view of `model` that encodes only the features' content (at least `min_s`).

    Args:
        model: A loaded model (shared, not changed).
        min_s: Shortest window encoded, in seconds; the content is rounded up to whole
            seconds above that.

    Returns:
        A model object for `transcribe` calls on short clips.
    """
    view = copy.copy(model)
    whole = model.encode
    min_frames = int(min_s * FRAMES_PER_S)

    def encode(features: np.ndarray) -> Any:
        # A second of padding past the content, as Whisper always sees some after speech.
        frames = math.ceil(content_frames(features) / FRAMES_PER_S + 1) * FRAMES_PER_S
        keep = min(features.shape[-1], max(min_frames, frames))
        return whole(np.ascontiguousarray(features[..., :keep]))

    # An instance attribute wins over the class's method, for this view only.
    view.encode = encode
    return view
