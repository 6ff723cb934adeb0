"""Reading a PyTorch state dict (the legacy, non-zip `torch.save` format) into numpy, without
torch and without trusting the file.

A `.pt` file is a pickle, and a pickle can call any Python function while it loads. This reader
lets it name only the three globals a plain state dict needs (an OrderedDict, the float32
storage type and torch's tensor rebuilder), each replaced by a harmless stand-in; a file that
asks for anything else is refused with a ModelError before anything runs. Nor may it set state
on a stand-in after it is built (pickle's BUILD): a tensor's checked shape and stride would be
replaced (a negative stride reads outside its storage), or attributes set on this module's
objects. Only an OrderedDict takes state (torch sets its `_metadata` so).

The legacy layout is five pickles in a row (magic number, protocol version, system info, the
object itself, the list of storage keys), then each storage's raw bytes in the order of that
list, every one preceded by its element count as a little-endian int64.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pendant.core.errors import ModelError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001


class _NoState:
    """A stand-in pickle may not set state on (its BUILD opcode calls `__setstate__`), whether
    on an instance or on the class itself."""

    def __setstate__(*_: Any) -> None:
        raise pickle.UnpicklingError("it sets state on a tensor, a storage or a torch global")


@dataclass
class _Storage(_NoState):
    """A storage named in the pickle; its bytes follow the pickles."""

    key: str
    numel: int
    data: np.ndarray | None = None


@dataclass
class _Tensor(_NoState):
    """A tensor as the pickle describes it: a strided view of a storage."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    extra: tuple[Any, ...] = field(default_factory=tuple)

    def array(self) -> np.ndarray:
        data = self.storage.data
        assert data is not None
        count = 1
        for dim in self.shape:
            count *= dim
        if self.offset < 0 or self.offset + _span(self.shape, self.stride) > len(data):
            raise ValueError(f"a tensor reaches past its storage {self.storage.key}")
        if count == 0:
            return np.zeros(self.shape, dtype=np.float32)
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view, dtype=np.float32)


def _span(shape: tuple[int, ...], stride: tuple[int, ...]) -> int:
    """How many elements past the offset a strided view reaches (its last one, plus one)."""
    if any(d == 0 for d in shape):
        return 0
    return 1 + sum((d - 1) * s for d, s in zip(shape, stride, strict=True))


class _FloatStorage(_NoState):
    """Stands in for `torch.FloatStorage`: only ever compared by identity."""


class _RebuildTensor(_NoState):
    """Stands in for `torch._utils._rebuild_tensor_v2`: a checked `_Tensor`."""

    def __call__(self, storage: Any, offset: Any, shape: Any, stride: Any, *extra: Any) -> _Tensor:
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError("a tensor without a float32 storage")
        if not (
            isinstance(offset, int)
            and isinstance(shape, tuple)
            and isinstance(stride, tuple)
            and len(shape) == len(stride)
            and all(isinstance(d, int) and d >= 0 for d in shape)
            and all(isinstance(s, int) and s >= 0 for s in stride)
        ):
            raise pickle.UnpicklingError("a tensor with a malformed shape or stride")
        return _Tensor(storage, offset, shape, stride, extra)


# (module, name) -> the stand-in: everything a float32 state dict needs, and nothing else.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch", "FloatStorage"): _FloatStorage,
    ("torch._utils", "_rebuild_tensor_v2"): _RebuildTensor(),
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, f: BinaryIO) -> None:
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}") from None

    def persistent_load(self, pid: Any) -> _Storage:
        # ('storage', storage type, key, location, element count, view metadata)
        if not (
            isinstance(pid, tuple)
            and len(pid) == 6
            and pid[0] == "storage"
            and pid[1] is _FloatStorage
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
            and pid[4] >= 0
            and pid[5] is None
        ):
            raise pickle.UnpicklingError("a storage that is not a plain float32 one")
        key, numel = pid[2], pid[4]
        storage = self.storages.setdefault(key, _Storage(key, numel))
        if storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} named with two sizes")
        return storage


class _Plain(pickle.Unpickler):
    """For the header pickles and the key list: no globals, no persistent ids at all."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it asks for {module}.{name}")


def _read(f: BinaryIO) -> dict[str, np.ndarray]:
    try:
        magic = _Plain(f).load()
    except Exception:  # whatever the first bytes are, they are not torch.save's header
        magic = None
    if magic != MAGIC:
        raise ValueError("not a legacy torch.save file (no torch magic number)")
    if _Plain(f).load() != PROTOCOL:
        raise ValueError("an unknown torch.save protocol")
    info = _Plain(f).load()
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise ValueError("not a little-endian torch.save file")
    unpickler = _Unpickler(f)
    root = unpickler.load()
    keys = _Plain(f).load()
    if not isinstance(keys, list) or set(keys) != set(unpickler.storages):
        raise ValueError("its storage list does not match the tensors")
    for key in keys:
        storage = unpickler.storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise ValueError(f"storage {key} holds {numel} elements, not {storage.numel}")
        raw = f.read(4 * numel)
        if len(raw) != 4 * numel:
            raise ValueError("it ends inside a storage (truncated)")
        storage.data = np.frombuffer(raw, dtype="<f4")
    state = root.get("model_state", root) if isinstance(root, dict) else None
    if not isinstance(state, dict):
        raise ValueError("it holds no state dict")
    return {
        str(name): tensor.array() for name, tensor in state.items() if isinstance(tensor, _Tensor)
    }


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of the state dict in `path` (a checkpoint's `model_state`, or the file's
    top-level dict), by name; ModelError, one line, if it is unreadable or asks for anything a
    plain state dict does not need."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return _read(io.BytesIO(data))
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"{path} is refused: {exc} (only plain float32 state dicts load)"
        ) from None
    except (ValueError, EOFError, struct.error, TypeError, AttributeError, IndexError) as exc:
        raise ModelError(f"{path} is not a readable torch state dict: {exc}") from None
