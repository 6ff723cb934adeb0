"""The GE2E encoder as an ONNX graph, written straight from its numpy weights.

onnxruntime runs an LSTM several times faster than a numpy loop over time steps, but it only
takes ONNX, and the `onnx` package is not on the pendant. The graph is tiny (three LSTM nodes,
two squeezes, a linear layer and a ReLU), so it is serialised here with a minimal protobuf
writer: only the fields this graph uses, by their numbers in onnx.proto. The tests check the
bytes with onnx's own checker and the output against a numpy LSTM.
"""

from __future__ import annotations

import numpy as np

IR_VERSION = 8
OPSET = 17
INPUT = "mels"
"""(frames, batch, 40) float32: time first, as ONNX's LSTM takes it."""
OUTPUT = "raw"
"""(batch, 256) float32: the embedding before its L2 normalisation."""

_FLOAT = 1  # TensorProto.FLOAT
_INT64 = 7  # TensorProto.INT64
_ATTR_INT = 2  # AttributeProto.INT


# --------------------------------------------------------------------------- protobuf wire format


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


# --------------------------------------------------------------------------- ONNX messages


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    kinds = {np.dtype(np.float32): (_FLOAT, "<f4"), np.dtype(np.int64): (_INT64, "<i8")}
    kind, little = kinds[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=little).tobytes()
    return dims + _int(2, kind) + _bytes(8, name) + _bytes(9, raw)


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int) -> bytes:
    """NodeProto: input (1), output (2), op_type (4), attribute (5: name 1, i 3, type 20)."""
    out = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    out += _bytes(4, op)
    for name, value in ints.items():
        out += _bytes(5, _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT))
    return out


def _value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto of a float tensor: name (1), type (2: tensor_type 1: elem_type 1, shape 2:
    dim 1: dim_value 1 or dim_param 2)."""
    shape = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, _FLOAT) + _bytes(2, shape)))


def _onnx_gates(w: np.ndarray) -> np.ndarray:
    """Torch stacks an LSTM's gates (input, forget, cell, output); ONNX (input, output, forget,
    cell)."""
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def encoder_model(state: dict[str, np.ndarray], layers: int) -> bytes:
    """A serialised ONNX ModelProto of Resemblyzer's encoder from its torch state dict (`lstm.*`
    for `layers` layers, `linear.*`): mels (frames, batch, n_mels) -> raw (batch, embedding)."""
    hidden = state["lstm.weight_hh_l0"].shape[1]
    n_mels = state["lstm.weight_ih_l0"].shape[1]
    nodes: list[bytes] = []
    inits: list[bytes] = [_tensor("axis0", np.array([0], np.int64))]
    inits.append(_tensor("axis1", np.array([1], np.int64)))
    x = INPUT
    for layer in range(layers):
        w = _onnx_gates(state[f"lstm.weight_ih_l{layer}"])[None]
        r = _onnx_gates(state[f"lstm.weight_hh_l{layer}"])[None]
        b = np.concatenate(
            [
                _onnx_gates(state[f"lstm.bias_ih_l{layer}"]),
                _onnx_gates(state[f"lstm.bias_hh_l{layer}"]),
            ]
        )[None]
        for kind, array in (("W", w), ("R", r), ("B", b)):
            inits.append(_tensor(f"{kind}{layer}", array.astype(np.float32)))
        y, h = f"y{layer}", f"h{layer}"
        nodes.append(_node("LSTM", [x, f"W{layer}", f"R{layer}", f"B{layer}"], [y, h],
                           hidden_size=hidden))  # fmt: skip
        # Y is (frames, directions, batch, hidden): the next layer takes it without directions.
        x = f"x{layer + 1}"
        nodes.append(_node("Squeeze", [y, "axis1"], [x]))
    # The last layer's final hidden state (directions, batch, hidden) -> linear -> ReLU.
    nodes.append(_node("Squeeze", [f"h{layers - 1}", "axis0"], ["last"]))
    inits.append(_tensor("linear_w", np.ascontiguousarray(state["linear.weight"].T)))
    inits.append(_tensor("linear_b", state["linear.bias"].astype(np.float32)))
    nodes.append(_node("MatMul", ["last", "linear_w"], ["projected"]))
    nodes.append(_node("Add", ["projected", "linear_b"], ["biased"]))
    nodes.append(_node("Relu", ["biased"], [OUTPUT]))
    embedding = state["linear.weight"].shape[0]
    graph = b"".join(_bytes(1, n) for n in nodes) + _bytes(2, "ge2e_voice_encoder")
    graph += b"".join(_bytes(5, t) for t in inits)
    graph += _bytes(11, _value_info(INPUT, ["frames", "batch", n_mels]))
    graph += _bytes(12, _value_info(OUTPUT, ["batch", embedding]))
    opset = _bytes(1, "") + _int(2, OPSET)
    return _int(1, IR_VERSION) + _bytes(2, "pendant") + _bytes(7, graph) + _bytes(8, opset)
