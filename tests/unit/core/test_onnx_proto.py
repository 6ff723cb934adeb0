"""ONNX written without the onnx package: onnx's checker takes the bytes, onnxruntime runs them."""

from __future__ import annotations

import numpy as np
import pytest

from pendant.core.onnx_proto import Graph, initializers, outputs_of
from pendant.core.onnx_session import session


def test_every_kind_of_attribute_is_written_as_onnx_reads_it() -> None:
    # An INT (axis), a FLOAT (epsilon), INTS (pads, strides), a STRING (mode), two outputs.
    g = Graph("attrs")
    x = g.op("Pad", "x", g.ints(0, 0, 2, 0, 0, 2), mode="reflect")  # (1, 1, 8) -> (1, 1, 12)
    x = g.op("Conv", x, g.weight("k", np.ones((2, 1, 3), np.float32)), strides=[2], pads=[1, 1])
    halves = g.op("Split", x, g.ints(1, 1), outputs=2, axis=1)
    a, b = outputs_of(halves, 2)
    x = g.op("Add", a, g.op("Mul", b, g.scalar(-0.5)))  # (1, 1, 6)
    x = g.op("LayerNormalization", x, g.weight("w", np.ones(6)), g.weight("b", np.zeros(6)),
             axis=-1, epsilon=1e-3)  # fmt: skip
    g.output("Identity", "y", x)
    model = g.model({"x": [1, 1, "n"]}, {"y": [1, 1, "m"]})
    onnx = pytest.importorskip("onnx", reason="onnx (a dev dependency) checks the bytes")
    proto = onnx.load_from_string(model)
    onnx.checker.check_model(proto, full_check=True)
    attrs = {
        a.name: onnx.helper.get_attribute_value(a) for n in proto.graph.node for a in n.attribute
    }
    assert attrs["mode"] == b"reflect" and attrs["strides"] == [2] and attrs["pads"] == [1, 1]
    assert attrs["axis"] == -1 and attrs["epsilon"] == pytest.approx(1e-3)

    x_in = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    (y,) = session(model, "test").run(None, {"x": x_in})
    padded = np.pad(x_in[0, 0], 2, mode="reflect")
    conv = np.convolve(np.pad(padded, 1), np.ones(3), mode="valid")[::2]
    expect = conv - 0.5 * conv
    expect = (expect - expect.mean()) / np.sqrt(expect.var() + 1e-3)
    np.testing.assert_allclose(y[0, 0], expect, rtol=1e-4, atol=1e-4)


def test_a_weight_or_constant_is_stored_once_by_name() -> None:
    g = Graph("once")
    assert g.ints(1, -1) == g.ints(1, -1) != g.ints(1, 1)
    assert g.scalar(0.5) == g.scalar(0.5)
    g.weight("w", np.zeros(3, np.float32))
    g.weight("w", np.ones(3, np.float32))  # the first stays
    g.output("Identity", "y", "w")
    onnx = pytest.importorskip("onnx", reason="onnx (a dev dependency) reads the bytes")
    proto = onnx.load_from_string(g.model({}, {"y": [3]}))
    names = [t.name for t in proto.graph.initializer]
    assert sorted(names) == sorted(set(names)) and len(names) == 4
    (w,) = (t for t in proto.graph.initializer if t.name == "w")
    assert onnx.numpy_helper.to_array(w).tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    "damage",
    [b"\xff" * 65536, b"\x3a\xff\xff\xff\x0f" + b"\x00" * 16, b"\x3a\x05\x2a\x03\x08"],
    ids=["erased", "too long", "cut short"],
)
def test_a_damaged_file_is_not_a_model(damage: bytes) -> None:
    """Erased blocks of an SD card read as 0xff; a length past the end is a cut file: each is
    one clear error, not an index error from deep inside, nor minutes of work."""
    with pytest.raises(ValueError, match="not an ONNX model"):
        initializers(damage)
