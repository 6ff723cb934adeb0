"""The GE2E encoder as an ONNX graph, written straight from its numpy weights.

onnxruntime runs an LSTM several times faster than a numpy loop over time steps, but it only
takes ONNX, and the `onnx` package is not on the pendant: the graph (three LSTM nodes, two
squeezes, a linear layer and a ReLU) is written with `pendant.core.onnx_proto`. The tests check
the bytes with onnx's own checker and the output against a numpy LSTM.
"""

from __future__ import annotations

import numpy as np

from pendant.core.onnx_proto import Graph

INPUT = "mels"
"""(frames, batch, 40) float32: time first, as ONNX's LSTM takes it."""
OUTPUT = "raw"
"""(batch, 256) float32: the embedding before its L2 normalisation."""


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
    g = Graph("ge2e_voice_encoder")
    x = INPUT
    last = ""
    for layer in range(layers):
        w = g.weight(f"W{layer}", _onnx_gates(state[f"lstm.weight_ih_l{layer}"])[None])
        r = g.weight(f"R{layer}", _onnx_gates(state[f"lstm.weight_hh_l{layer}"])[None])
        both = [_onnx_gates(state[f"lstm.bias_ih_l{layer}"]),
                _onnx_gates(state[f"lstm.bias_hh_l{layer}"])]  # fmt: skip
        b = g.weight(f"B{layer}", np.concatenate(both)[None])
        y = g.op("LSTM", x, w, r, b, outputs=2, hidden_size=hidden)
        last = f"{y}.1"  # Y_h: the final hidden state (directions, batch, hidden)
        # Y is (frames, directions, batch, hidden): the next layer takes it without directions.
        x = g.op("Squeeze", y, g.ints(1))
    linear_w = g.weight("linear_w", np.ascontiguousarray(state["linear.weight"].T))
    projected = g.op("MatMul", g.op("Squeeze", last, g.ints(0)), linear_w)
    biased = g.op("Add", projected, g.weight("linear_b", state["linear.bias"]))
    g.output("Relu", OUTPUT, biased)
    embedding = state["linear.weight"].shape[0]
    return g.model({INPUT: ["frames", "batch", n_mels]}, {OUTPUT: ["batch", embedding]})
