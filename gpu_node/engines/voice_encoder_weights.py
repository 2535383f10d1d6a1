"""Reads the tensors of a legacy (pre-1.6) PyTorch checkpoint without torch.

resemblyzer's `pretrained.pt` is in PyTorch's legacy serialization: five pickles written one
after another (magic number, protocol version, system info, the object, the list of storage
keys), then each storage as an int64 element count followed by its raw little-endian bytes,
in the order of that key list. The object pickle refers to storages by persistent id and
builds tensors with `torch._utils._rebuild_tensor_v2`.

The unpickler here is restricted: it resolves exactly the globals a state dict needs and
refuses every other one, so a tampered file cannot run code. (A zip-format checkpoint of
PyTorch >= 1.6 is recognised and refused with a clear message; resemblyzer does not ship one.)
"""

from __future__ import annotations

import collections
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes are read after the object pickle."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef,
    offset: int,
    shape: tuple[int, ...],
    strides: tuple[int, ...],
    *_ignored: object,
) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(shape), tuple(strides))


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise CheckpointError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # ("storage", storage_type, key, location, size[, view_metadata])
        if not isinstance(pid, tuple) or len(pid) < 3 or pid[0] != "storage":
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        storage_type = pid[1]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unexpected storage type {storage_type!r}")
        return _StorageRef(str(pid[2]), storage_type.dtype)


def _load_pickle(stream: BinaryIO) -> Any:
    return _RestrictedUnpickler(stream).load()


def load_legacy_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a legacy PyTorch checkpoint, turning every tensor into a numpy array.

    Args:
        path: The `.pt` file.

    Returns:
        The checkpoint object (usually a dict) with tensors replaced by float arrays.

    Raises:
        CheckpointError: The file is not a legacy checkpoint, is truncated, or refers to
            anything but tensors and plain containers.
    """
    with path.open("rb") as stream:
        if stream.read(2) == b"PK":
            raise CheckpointError(f"{path} is a zip-format checkpoint; only legacy is read")
        stream.seek(0)
        if _load_pickle(stream) != _LEGACY_MAGIC:
            raise CheckpointError(f"{path} is not a legacy PyTorch checkpoint")
        _load_pickle(stream)  # protocol version
        sys_info = _load_pickle(stream)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise CheckpointError(f"{path} was written on a big-endian machine")
        obj = _load_pickle(stream)
        keys = _load_pickle(stream)
        storages: dict[str, bytes] = {}
        for key in keys:
            header = stream.read(8)
            if len(header) != 8:
                raise CheckpointError(f"{path} is truncated")
            (count,) = struct.unpack("<q", header)
            # The element size is not stored; every storage we need is referenced by a
            # tensor, so its dtype is known from the object pickle.
            storages[str(key)] = _read_exact(stream, count, path, key, obj)
    result = _materialise(obj, storages)
    if not isinstance(result, dict):
        raise CheckpointError(f"{path} holds a {type(result).__name__}, not a dict")
    return result


def _read_exact(stream: BinaryIO, count: int, path: Path, key: str, obj: Any) -> bytes:
    itemsize = _itemsize_of(obj, key)
    data = stream.read(count * itemsize)
    if len(data) != count * itemsize:
        raise CheckpointError(f"{path} is truncated in storage {key}")
    return data


def _itemsize_of(obj: Any, key: str) -> int:
    for ref in _tensor_refs(obj):
        if ref.storage.key == key:
            return int(ref.storage.dtype.itemsize)
    raise CheckpointError(f"storage {key} is not referenced by any tensor")


def _tensor_refs(obj: Any) -> list[_TensorRef]:
    if isinstance(obj, _TensorRef):
        return [obj]
    if isinstance(obj, dict):
        return [ref for value in obj.values() for ref in _tensor_refs(value)]
    if isinstance(obj, list | tuple):
        return [ref for value in obj for ref in _tensor_refs(value)]
    return []


def _materialise(obj: Any, storages: dict[str, bytes]) -> Any:
    if isinstance(obj, _TensorRef):
        return _to_array(obj, storages[obj.storage.key])
    if isinstance(obj, dict):
        return {key: _materialise(value, storages) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_materialise(value, storages) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(value, storages) for value in obj)
    return obj


def _to_array(ref: _TensorRef, data: bytes) -> npt.NDArray[Any]:
    flat = np.frombuffer(data, dtype=ref.storage.dtype)
    itemsize = ref.storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.shape,
        strides=tuple(stride * itemsize for stride in ref.strides),
        writeable=False,
    )
    return np.array(view, dtype=ref.storage.dtype.newbyteorder("="))
