"""Live first: batch work on a node steps aside while a live final is being decoded.

On CPU, a batch transcription and a live decode each run CTranslate2 on every core, so a
live final decoded beside a batch job takes about twice as long as on an idle node. The
number of threads of a loaded model cannot change per call, so instead of shrinking the
batch decoder, batch work pauses at its natural steps (each CTranslate2 call of a Whisper
window: encode, generate, align; each span's voice embedding) while a live final is in
flight, and the final gets the cores to itself. A pause lasts at most `max_wait_s` per
step, so a node with live finals back to back still finishes its batch jobs.

Only finals hold the gate: partials run whenever the live decoder is free, so gating on
them would slow batch work for the whole length of every live session.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faster_whisper import WhisperModel


class LiveFirst:
    """A gate shared by the live and batch engines of one node (thread-safe).

    Attributes:
        max_wait_s: Longest pause of one batch step; 0 turns the gate off.
    """

    def __init__(self, max_wait_s: float) -> None:
        """Creates an open gate.

        Args:
            max_wait_s: Longest pause of one batch step; 0 turns the gate off.
        """
        self.max_wait_s = max_wait_s
        self._changed = threading.Condition()
        self._live = 0
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Batch steps paused at the gate right now."""
        with self._changed:
            return self._waiting

    @contextlib.contextmanager
    def live(self) -> Iterator[None]:
        """Holds batch work back while the block runs (a live final's decode)."""
        with self._changed:
            self._live += 1
        try:
            yield
        finally:
            with self._changed:
                self._live -= 1
                self._changed.notify_all()

    def yield_to_live(self) -> None:
        """Blocks the calling batch worker while live finals run, at most `max_wait_s`."""
        if self.max_wait_s <= 0:
            return
        with self._changed:
            if not self._live:
                return
            self._waiting += 1
            try:
                self._changed.wait_for(lambda: not self._live, timeout=self.max_wait_s)
            finally:
                self._waiting -= 1


class _GatedWhisper:
    """CTranslate2's Whisper model whose `generate` and `align` first yield to live finals."""

    def __init__(self, inner: Any, gate: LiveFirst) -> None:
        self._inner = inner
        self._gate = gate

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self._gate.yield_to_live()
        return self._inner.generate(*args, **kwargs)

    def align(self, *args: Any, **kwargs: Any) -> Any:
        self._gate.yield_to_live()
        return self._inner.align(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def batch_view(model: WhisperModel, gate: LiveFirst) -> WhisperModel:
    """Returns a view of `model` whose CTranslate2 calls each yield to live finals first.

    Args:
        model: A loaded model (shared, not changed).
        gate: The node's gate.

    Returns:
        A model object for batch `transcribe` calls.
    """
    view = copy.copy(model)
    whole = model.encode

    def encode(features: Any) -> Any:
        gate.yield_to_live()
        return whole(features)

    # Instance attributes win over the class's, for this view only.
    view.encode = encode
    view.model = _GatedWhisper(model.model, gate)
    return view
