"""resemblyzer's speaker encoder, re-implemented in numpy so that no torch is needed.

The network (resemblyzer/voice_encoder.py): a 3-layer LSTM (40 inputs, 256 hidden) over
1.6 s "partial utterances" of 160 mel frames, then linear 256->256, ReLU and L2 norm; an
utterance's embedding is the L2-normed mean of its partials' embeddings. The front end
(resemblyzer/audio.py, hparams.py) is librosa's power mel spectrogram: 25 ms Hann window
(n_fft 400), 10 ms hop, 40 Slaney-normalised mel bands, centred frames, not logarithmic.
The audio is first raised to -30 dBFS (never lowered), as resemblyzer does; its webrtcvad
silence trimming is left out because the caller hands in speech spans.

The weights are resemblyzer's `pretrained.pt`, read by `voice_encoder_weights` (the
package itself is never imported: its `__init__` imports torch and librosa).
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gpu_node.engines.voice_encoder_weights import CheckpointError, load_legacy_checkpoint

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
LAYERS = 3
TARGET_DBFS = -30.0
# resemblyzer's embed_utterance defaults: 1.3 partials per second, and a last partial is
# kept when at least 75 % of it is real audio.
PARTIAL_RATE = 1.3
MIN_COVERAGE = 0.75

Floats = npt.NDArray[np.float32]


def pretrained_weights_path() -> Path:
    """Finds resemblyzer's `pretrained.pt` without importing resemblyzer.

    Returns:
        The path of the weights file.

    Raises:
        FileNotFoundError: resemblyzer is not installed, or ships no weights.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("resemblyzer is not installed (it is in the `engines` extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise FileNotFoundError(f"resemblyzer ships no weights at {path}")
    return path


def _hz_to_mel(hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    # Slaney's scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def _mel_to_hz(mel: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    linear = mel * f_sp
    log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log, linear)


@cache
def mel_filterbank() -> Floats:
    """Returns librosa's `filters.mel(sr=16000, n_fft=400, n_mels=40)`, shape (40, 201)."""
    fft_freqs = np.linspace(0, SAMPLE_RATE / 2, 1 + N_FFT // 2)
    mel_points = np.linspace(
        _hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2.0)), N_MELS + 2
    )
    mel_f = _mel_to_hz(mel_points)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : N_MELS + 2] - mel_f[:N_MELS]))[:, None]
    return weights.astype(np.float32)


def mel_spectrogram(wav: Floats) -> Floats:
    """Computes resemblyzer's (non-log) power mel spectrogram.

    Args:
        wav: 16 kHz mono samples.

    Returns:
        Frames x 40 mel energies, one frame per 10 ms plus one (centred framing).
    """
    padded = np.pad(wav.astype(np.float32), N_FFT // 2, mode="reflect")
    n_frames = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded,
        shape=(n_frames, N_FFT),
        strides=(padded.strides[0] * HOP, padded.strides[0]),
        writeable=False,
    )
    # Periodic Hann, as scipy.signal.get_window("hann", N, fftbins=True) gives librosa.
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    return (power.astype(np.float32) @ mel_filterbank().T).astype(np.float32)


def _sigmoid(x: Floats) -> Floats:
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


class VoiceEncoder:
    """Speaker embeddings (256 floats, L2-normed, non-negative) from speech."""

    def __init__(self, weights: Path | None = None) -> None:
        """Loads the network.

        Args:
            weights: A resemblyzer-format checkpoint; resemblyzer's own by default.

        Raises:
            CheckpointError: The checkpoint is unreadable or lacks the encoder's tensors.
            FileNotFoundError: No weights were given and resemblyzer is not installed.
        """
        checkpoint = load_legacy_checkpoint(weights or pretrained_weights_path())
        state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise CheckpointError("checkpoint has no model_state")
        try:
            self._layers = [
                (
                    np.ascontiguousarray(state[f"lstm.weight_ih_l{k}"].T, dtype=np.float32),
                    np.ascontiguousarray(state[f"lstm.weight_hh_l{k}"].T, dtype=np.float32),
                    (state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"]).astype(np.float32),
                )
                for k in range(LAYERS)
            ]
            self._linear_w = np.ascontiguousarray(state["linear.weight"].T, dtype=np.float32)
            self._linear_b = state["linear.bias"].astype(np.float32)
        except KeyError as exc:
            raise CheckpointError(f"checkpoint lacks tensor {exc}") from None
        if self._layers[0][0].shape != (N_MELS, 4 * HIDDEN):
            raise CheckpointError(f"unexpected LSTM input shape {self._layers[0][0].shape}")

    def forward(self, mels: Floats) -> Floats:
        """Embeds a batch of partial utterances.

        Args:
            mels: Batch x frames x 40 mel spectrograms.

        Returns:
            Batch x 256 embeddings, L2-normed.
        """
        x = mels.astype(np.float32)
        batch, steps, _ = x.shape
        h = np.zeros((batch, HIDDEN), dtype=np.float32)
        for w_ih, w_hh, bias in self._layers:
            # The input projection of every step at once; only the recurrence is sequential.
            projected = x @ w_ih + bias
            h = np.zeros((batch, HIDDEN), dtype=np.float32)
            c = np.zeros((batch, HIDDEN), dtype=np.float32)
            outputs = np.empty((batch, steps, HIDDEN), dtype=np.float32)
            for t in range(steps):
                gates = projected[:, t] + h @ w_hh
                # PyTorch's gate order: input, forget, cell, output.
                i = _sigmoid(gates[:, :HIDDEN])
                f = _sigmoid(gates[:, HIDDEN : 2 * HIDDEN])
                g = np.tanh(gates[:, 2 * HIDDEN : 3 * HIDDEN])
                o = _sigmoid(gates[:, 3 * HIDDEN :])
                c = f * c + i * g
                h = o * np.tanh(c)
                outputs[:, t] = h
            x = outputs
        raw = np.maximum(h @ self._linear_w + self._linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        embeddings: Floats = (raw / np.maximum(norms, 1e-12)).astype(np.float32)
        return embeddings

    def embed_utterance(self, wav: Floats) -> Floats:
        """Embeds one utterance as resemblyzer's `embed_utterance` does.

        Args:
            wav: 16 kHz mono speech of one speaker; any length (short ones are padded).

        Returns:
            A 256-float embedding, L2-normed.
        """
        wav = normalize_volume(wav)
        mel_slices = partial_slices(len(wav))
        needed = mel_slices[-1].stop * HOP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        mel = mel_spectrogram(wav)
        partials = np.stack([mel[s] for s in mel_slices])
        embeds = self.forward(partials)
        mean = embeds.mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def normalize_volume(wav: Floats) -> Floats:
    """Raises quiet audio to -30 dBFS (never lowers it), as resemblyzer's preprocessing does.

    Args:
        wav: Samples in [-1, 1].

    Returns:
        The scaled samples (silence is returned as is).
    """
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
    if rms <= 1e-9:
        return wav.astype(np.float32)
    change_db = TARGET_DBFS - 20 * np.log10(rms)
    if change_db <= 0:
        return wav.astype(np.float32)
    louder: Floats = (wav * 10 ** (change_db / 20)).astype(np.float32)
    return louder


def partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame slices of the partial utterances covering `n_samples` (resemblyzer's rule).

    Args:
        n_samples: Length of the utterance.

    Returns:
        At least one slice of 160 frames; consecutive slices overlap.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = round((SAMPLE_RATE / PARTIAL_RATE) / HOP)
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(slices) > 1:
        slices = slices[:-1]
    return slices
