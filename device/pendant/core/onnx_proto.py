"""ONNX models written, and their weights read, without the `onnx` package, which is not on
the pendant.

Some models ship as plain weights (a torch state dict, hama's weight pack) and onnxruntime runs
them several times faster than numpy would, but it only takes ONNX. `Graph` collects nodes and
weights and `Graph.model` serialises them with a minimal protobuf writer: only the fields such
graphs use, by their numbers in onnx.proto. The tests check the bytes with onnx's own checker.
`initializers` reads the other way: a model's top-level float32 weights, for one small enough
that numpy runs it cheaper than onnxruntime's per-call overhead (Silero's VAD).
"""

from __future__ import annotations

import struct

import numpy as np

IR_VERSION = 8
OPSET = 17

_TENSOR_TYPES = {np.dtype(np.float32): (1, "<f4"), np.dtype(np.int64): (7, "<i8")}
# AttributeProto.AttributeType, and the field each kind of value goes in.
_FLOAT, _INT, _STRING, _INTS = 1, 2, 3, 7

Attr = int | float | str | list[int]
"""A node attribute's value: INT, FLOAT, STRING or INTS."""


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int64s are ten bytes of two's complement
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian); float32 or
    int64."""
    kind, little = _TENSOR_TYPES[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=little).tobytes()
    return dims + _int(2, kind) + _bytes(8, name) + _bytes(9, raw)


def _attribute(name: str, value: Attr) -> bytes:
    """AttributeProto: name (1), f (2), i (3), s (4), ints (8), type (20)."""
    out = _bytes(1, name)
    if isinstance(value, int):
        return out + _int(3, int(value)) + _int(20, _INT)
    if isinstance(value, float):
        return out + _varint(2 << 3 | 5) + struct.pack("<f", value) + _int(20, _FLOAT)
    if isinstance(value, str):
        return out + _bytes(4, value) + _int(20, _STRING)
    return out + b"".join(_int(8, v) for v in value) + _int(20, _INTS)


def node(op: str, inputs: list[str], outputs: list[str], **attrs: Attr) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5)."""
    out = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    out += _bytes(4, op)
    return out + b"".join(_bytes(5, _attribute(k, v)) for k, v in attrs.items())


def value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto of a float tensor: name (1), type (2: tensor_type 1: elem_type 1, shape 2:
    dim 1: dim_value 1 or dim_param 2)."""
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, 1) + _bytes(2, shape)))


class Graph:
    """A graph built a node at a time: `op` adds one and names its output, `weight` and `ints`
    add initialisers; `model` is the serialised ModelProto."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._nodes: list[bytes] = []
        self._inits: list[bytes] = []
        self._named: set[str] = set()

    def weight(self, name: str, array: np.ndarray) -> str:
        """An initialiser (float32 unless int64), once per name."""
        if name not in self._named:
            self._named.add(name)
            kept = array if array.dtype == np.int64 else array.astype(np.float32, copy=False)
            self._inits.append(tensor(name, kept))
        return name

    def ints(self, *values: int) -> str:
        """An int64 vector initialiser (shapes, axes, split sizes), named by its values."""
        return self.weight("i64_" + "_".join(str(v).replace("-", "m") for v in values),
                           np.array(values, np.int64))  # fmt: skip

    def scalar(self, value: float) -> str:
        """A float32 scalar initialiser, named by its value."""
        return self.weight(f"f32_{value!r}", np.array(value, np.float32))

    def op(self, op: str, *inputs: str, outputs: int = 1, **attrs: Attr) -> str:
        """Adds a node; its (first) output's name. With `outputs` > 1 they are named
        `<first>`, `<first>.1`, ... (`outputs_of`)."""
        first = f"n{len(self._nodes)}"
        self._nodes.append(node(op, list(inputs), outputs_of(first, outputs), **attrs))
        return first

    def output(self, op: str, name: str, *inputs: str, **attrs: Attr) -> str:
        """Adds the node whose output is the graph's output `name`."""
        self._nodes.append(node(op, list(inputs), [name], **attrs))
        return name

    def model(
        self, inputs: dict[str, list[int | str]], outputs: dict[str, list[int | str]]
    ) -> bytes:
        """The ModelProto: ir_version (1), producer_name (2), graph (7), opset_import (8).

        Joined once: the weights are copied into the result and nowhere else on the way (a
        model's weights are megabytes, and the ears build one as they start)."""
        parts = [_bytes(1, n) for n in self._nodes] + [_bytes(2, self.name)]
        for t in self._inits:  # _bytes(5, t), without copying t
            parts += [_varint(5 << 3 | 2), _varint(len(t)), t]
        parts += [_bytes(11, value_info(k, v)) for k, v in inputs.items()]
        parts += [_bytes(12, value_info(k, v)) for k, v in outputs.items()]
        head = _int(1, IR_VERSION) + _bytes(2, "pendant")
        head += _varint(7 << 3 | 2) + _varint(sum(len(part) for part in parts))
        opset = _bytes(8, _bytes(1, "") + _int(2, OPSET))
        return b"".join([head, *parts, opset])


def outputs_of(first: str, count: int) -> list[str]:
    """The names of a node's `count` outputs, given its first (`Graph.op`)."""
    return [first] + [f"{first}.{i}" for i in range(1, count)]


def _read_varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 64:
        if at >= len(data):
            raise ValueError("not an ONNX model: truncated")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
    raise ValueError("not an ONNX model: a number longer than ten bytes")


def _fields(data: memoryview) -> list[tuple[int, int | memoryview]]:
    """A message's fields in order: (number, varint value or the bytes of a length-delimited
    field); fixed-width fields are skipped."""
    out: list[tuple[int, int | memoryview]] = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
            out.append((number, value))
        elif wire == 2:
            size, at = _read_varint(data, at)
            if at + size > len(data):
                raise ValueError("not an ONNX model: truncated")
            out.append((number, data[at : at + size]))
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
            if at > len(data):
                raise ValueError("not an ONNX model: truncated")
        else:
            raise ValueError(f"not an ONNX model: protobuf wire type {wire}")
    return out


def initializers(model: bytes) -> dict[str, np.ndarray]:
    """The float32 initialisers of a ModelProto's graph (not of its subgraphs) by name, as
    arrays of their shapes; weights kept in raw_data, as exporters write them."""
    graph = next(
        (v for n, v in _fields(memoryview(model)) if n == 7 and isinstance(v, memoryview)), None
    )
    if graph is None:
        raise ValueError("not an ONNX model: no graph")
    found = {}
    for number, value in _fields(graph):
        if number != 5 or not isinstance(value, memoryview):
            continue
        dims: list[int] = []
        name, kind, raw = "", 0, None
        for field, item in _fields(value):
            if field == 1 and isinstance(item, int):
                dims.append(item)
            elif field == 1 and isinstance(item, memoryview):  # packed dims
                at = 0
                while at < len(item):
                    dim, at = _read_varint(item, at)
                    dims.append(dim)
            elif field == 2 and isinstance(item, int):
                kind = item
            elif field == 8 and isinstance(item, memoryview):
                name = bytes(item).decode()
            elif field == 9 and isinstance(item, memoryview):
                raw = item
        if kind == 1 and raw is not None:
            found[name] = np.frombuffer(raw, dtype="<f4").reshape(dims).astype(np.float32)
    return found
