"""The speaker encoder without its model file: the manifest's pin, the torch-file reader's refusal
of anything but a plain state dict, the in-memory ONNX graph against a numpy LSTM, the mel
features, and the one-line errors for a missing model and wrong audio. The real model on real
voices is tests/speech/test_speaker.py's."""

from __future__ import annotations

import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from pendant.core.errors import AudioFormatError, ModelError
from pendant.core.model_cache import load_manifest
from pendant.core.onnx_session import session
from pendant.ears.speaker import features, onnx_graph
from pendant.ears.speaker.encoder import (
    DEFAULT_THRESHOLD,
    EMBEDDING_SIZE,
    HIDDEN,
    LAYERS,
    VoiceEncoder,
    partial_slices,
    similarity,
)
from pendant.ears.speaker.torchfile import MAGIC, PROTOCOL, load_state_dict

SYS_INFO = {"protocol_version": PROTOCOL, "little_endian": True, "type_sizes": {"int": 4}}


# --------------------------------------------------------------------------- writing .pt files


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data.astype("<f4").ravel()


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple) -> None:
        self.args = (storage, offset, shape, stride, False, OrderedDict())

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules named like torch's, so that pickle writes the globals a real .pt file names."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage = FloatStorage  # type: ignore[attr-defined]
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)


def write_pt(path: Path, root: object, storages: list[_Storage]) -> None:
    """`root` in torch.save's legacy layout: five pickles, then each storage's bytes."""

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            if isinstance(obj, _Storage):
                return ("storage", sys.modules["torch"].FloatStorage, obj.key, "cpu",
                        obj.data.size, None)  # fmt: skip
            return None

    with path.open("wb") as f:
        for header in (MAGIC, PROTOCOL, SYS_INFO):
            pickle.dump(header, f, protocol=2)
        Pickler(f, protocol=2).dump(root)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.data.size) + s.data.tobytes())


def random_state(hidden: int = HIDDEN, n_mels: int = features.N_MELS, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    state = {}
    for layer in range(LAYERS):
        n_in = n_mels if layer == 0 else hidden
        state[f"lstm.weight_ih_l{layer}"] = rng.normal(0, 0.3, (4 * hidden, n_in))
        state[f"lstm.weight_hh_l{layer}"] = rng.normal(0, 0.3, (4 * hidden, hidden))
        state[f"lstm.bias_ih_l{layer}"] = rng.normal(0, 0.3, 4 * hidden)
        state[f"lstm.bias_hh_l{layer}"] = rng.normal(0, 0.3, 4 * hidden)
    state["linear.weight"] = rng.normal(0, 0.3, (hidden, hidden))
    state["linear.bias"] = rng.normal(0, 0.3, hidden)
    return {k: v.astype(np.float32) for k, v in state.items()}


# --------------------------------------------------------------------------- the manifest


def test_the_manifest_pins_resemblyzers_encoder() -> None:
    spec = load_manifest()["ge2e-voice"]
    assert (spec.task, spec.runtime, spec.licence) == ("speaker", "onnxruntime", "Apache-2.0")
    assert [(w.package, w.version) for w in spec.wheels] == [("resemblyzer", "0.1.4")]
    (file,) = spec.files
    assert (file.name, spec.entry) == ("pretrained.pt", "pretrained.pt")
    assert file.parts == (("resemblyzer", "resemblyzer/pretrained.pt"),)


# --------------------------------------------------------------------------- the torch-file reader


def test_a_state_dict_reads_back_with_offsets_and_strides(tmp_path: Path, fake_torch: None) -> None:
    flat = np.arange(30, dtype=np.float32)
    shared = _Storage("1", flat)
    root = {
        "step": 3,
        "model_state": OrderedDict(
            a=_Tensor(shared, 0, (2, 3), (3, 1)),
            b=_Tensor(shared, 6, (3, 2), (1, 3)),  # a transposed view
            c=_Tensor(_Storage("2", np.array([7.0])), 0, (1,), (1,)),
        ),
    }
    path = tmp_path / "m.pt"
    write_pt(path, root, [shared, root["model_state"]["c"].args[0]])
    state = load_state_dict(path)
    np.testing.assert_array_equal(state["a"], flat[:6].reshape(2, 3))
    np.testing.assert_array_equal(state["b"], flat[6:12].reshape(2, 3).T)
    np.testing.assert_array_equal(state["c"], [7.0])


def test_a_pickle_that_asks_for_any_other_global_is_refused_before_it_runs(
    tmp_path: Path, fake_torch: None
) -> None:
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    write_pt(path, {"model_state": OrderedDict(w=Exploit())}, [])
    with pytest.raises(ModelError, match=r"refused: it asks for (posix|os)\.system") as err:
        load_state_dict(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()


class _Restrided(_Tensor):
    """A tensor whose checked stride a BUILD replaces after it is built."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (*super().__reduce__(), {"stride": (-1000,)})


def test_a_pickle_that_sets_state_on_a_built_tensor_is_refused(
    tmp_path: Path, fake_torch: None
) -> None:
    # Found by review: BUILD replaced a tensor's checked stride; a negative one read outside
    # its storage.
    storage = _Storage("1", np.arange(4, dtype=np.float32))
    path = tmp_path / "restrided.pt"
    write_pt(path, {"model_state": OrderedDict(w=_Restrided(storage, 3, (4,), (1,)))}, [storage])
    with pytest.raises(ModelError, match="refused: it sets state on a tensor"):
        load_state_dict(path)


def test_even_a_torch_global_it_does_not_need_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "param.pt"
    with path.open("wb") as f:
        for header in (MAGIC, PROTOCOL, SYS_INFO):
            pickle.dump(header, f, protocol=2)
        f.write(b"\x80\x02ctorch._utils\n_rebuild_parameter\n)R.")
    with pytest.raises(ModelError, match=r"asks for torch\._utils\._rebuild_parameter"):
        load_state_dict(path)


def test_a_truncated_or_foreign_file_is_one_line(tmp_path: Path, fake_torch: None) -> None:
    storage = _Storage("1", np.ones(8))
    path = tmp_path / "m.pt"
    write_pt(path, {"model_state": {"w": _Tensor(storage, 0, (8,), (1,))}}, [storage])
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ModelError, match="truncated"):
        load_state_dict(path)
    path.write_bytes(b"PK\x03\x04 not a legacy torch file")
    with pytest.raises(ModelError, match="not a readable torch state dict"):
        load_state_dict(path)


def test_a_missing_model_names_the_command_that_fetches_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        VoiceEncoder.load(tmp_path / "ge2e-voice" / "pretrained.pt")
    message = str(err.value)
    assert "make models" in message and "ge2e-voice" in message and "\n" not in message


def test_weights_of_another_shape_are_one_line() -> None:
    with pytest.raises(ModelError, match="do not fit"):
        VoiceEncoder(random_state(hidden=8))
    state = random_state()
    del state["linear.bias"]
    with pytest.raises(ModelError, match=r"lack linear\.bias"):
        VoiceEncoder(state)


# --------------------------------------------------------------------------- the ONNX graph


def numpy_lstm(state: dict, mels: np.ndarray) -> np.ndarray:
    """Torch's LSTM (gates input, forget, cell, output), then linear and ReLU, step by step."""

    def sigmoid(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    x = mels.astype(np.float64)
    for layer in range(LAYERS):
        w_ih, w_hh = state[f"lstm.weight_ih_l{layer}"], state[f"lstm.weight_hh_l{layer}"]
        bias = state[f"lstm.bias_ih_l{layer}"] + state[f"lstm.bias_hh_l{layer}"]
        hidden = w_hh.shape[1]
        h = np.zeros((x.shape[0], hidden))
        c = np.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            i, f, g, o = np.split(x[:, t] @ w_ih.T + h @ w_hh.T + bias, 4, axis=1)
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        x = np.stack(out, axis=1)
    return np.maximum(h @ state["linear.weight"].T + state["linear.bias"], 0)


def test_the_onnx_graph_is_valid_onnx_and_computes_torchs_lstm() -> None:
    state = random_state(hidden=8, n_mels=5, seed=1)
    model = onnx_graph.encoder_model(state, LAYERS)
    onnx = pytest.importorskip("onnx", reason="onnx (a dev dependency) checks the bytes")
    onnx.checker.check_model(onnx.load_from_string(model), full_check=True)
    mels = np.random.default_rng(2).random((3, 11, 5)).astype(np.float32)
    (raw,) = session(model, "test").run(None, {onnx_graph.INPUT: mels.transpose(1, 0, 2).copy()})
    np.testing.assert_allclose(raw, numpy_lstm(state, mels), atol=1e-5)


# --------------------------------------------------------------------------- features


def test_mel_filters_are_slaneys_40_bands_up_to_8khz() -> None:
    filters = features.mel_filters()
    assert filters.shape == (40, 201)
    peaks = filters.argmax(axis=1) * features.RATE_HZ / features.N_FFT
    assert np.all(np.diff(peaks) > 0) and peaks[0] < 100 and peaks[-1] > 6500
    # Slaney normalisation: every band's triangle has an area of one over frequency in Hz.
    areas = filters.sum(axis=1) * features.RATE_HZ / features.N_FFT
    np.testing.assert_allclose(areas, 1.0, rtol=0.05)


def test_a_tone_lights_the_band_of_its_frequency() -> None:
    t = np.arange(16_000) / 16_000
    mel = features.mel_spectrogram(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert mel.shape == (101, 40)
    band = int(features.mel_filters()[:, 1000 * features.N_FFT // 16_000].argmax())
    assert int(np.median(mel.argmax(axis=1))) == band


def test_partials_cover_the_utterance_like_resemblyzers() -> None:
    assert partial_slices(50) == [slice(0, 160)]
    # 1.3 partials a second: one every 77 frames; a last one less than 3/4 full is dropped.
    assert partial_slices(266) == [slice(0, 160), slice(77, 237)]
    assert partial_slices(280) == [slice(0, 160), slice(77, 237), slice(154, 314)]


# --------------------------------------------------------------------------- the encoder's input


@pytest.fixture(scope="module")
def encoder() -> VoiceEncoder:
    return VoiceEncoder(random_state())


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A buzz with a changing pitch and loudness: webrtcvad calls it speech."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16_000 * seconds)) / 16_000
    pitch = 140 + 30 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / 16_000
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.2 * voice * envelope + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def test_an_utterance_gives_a_unit_vector_of_256(encoder: VoiceEncoder) -> None:
    wav = speechlike(2.0)
    embedding = encoder.embed(wav)
    assert embedding is not None
    assert embedding.shape == (EMBEDDING_SIZE,) and embedding.dtype == np.float32
    assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)
    # int16 audio is read as int16 / 32768.
    pcm = (wav * 32767).astype(np.int16)
    as_int = encoder.embed(pcm)
    as_float = encoder.embed(pcm.astype(np.float32) / 32768)
    assert as_int is not None and as_float is not None
    np.testing.assert_array_equal(as_int, as_float)


def test_too_little_speech_gives_none(encoder: VoiceEncoder) -> None:
    assert encoder.embed(np.zeros(0, dtype=np.int16)) is None
    assert encoder.embed(np.zeros(32_000, dtype=np.int16)) is None
    assert encoder.embed(speechlike(0.1)) is None


@pytest.mark.parametrize(
    ("samples", "rate", "says"),
    [
        (np.zeros((16_000, 2), dtype=np.int16), 16_000, "mono"),
        (np.zeros(16_000, dtype=np.int32), 16_000, "int16 or float32, not int32"),
        (np.zeros(16_000, dtype=np.float64), 16_000, "int16 or float32, not float64"),
        (np.full(16_000, np.nan, dtype=np.float32), 16_000, "NaN"),
        (np.zeros(16_000, dtype=np.int16), 44_100, "16000 Hz, not 44100"),
        ([0, 1, 2], 16_000, "numpy array"),
    ],
)
def test_wrong_audio_is_one_line(encoder: VoiceEncoder, samples, rate: int, says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AudioFormatError, match=says) as err:
        encoder.embed(samples, rate)
    assert "\n" not in str(err.value)


def test_similarity_is_the_cosine() -> None:
    a = np.array([1.0, 0.0], dtype=np.float32)
    assert similarity(a, a) == pytest.approx(1.0)
    assert similarity(a, np.array([0.0, 2.0])) == pytest.approx(0.0)
    assert similarity(a, np.array([3.0, 3.0])) == pytest.approx(np.sqrt(0.5))
    assert similarity(a, np.zeros(2)) == 0.0
    assert 0 < DEFAULT_THRESHOLD < 1
