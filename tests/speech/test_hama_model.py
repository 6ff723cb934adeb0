"""hama's phoneme model run by onnxruntime (pendant.ears.asr.hama_model) hears what hama's own
engine hears: the same most likely token in every frame of the shared recordings."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from pendant.core.errors import BackendUnavailable
from pendant.ears.asr import hama_model
from tests.conftest import SPEECH

hama = pytest.importorskip("hama", reason="the hama backend's extra is not installed")


def pack(tensors: dict[str, np.ndarray]) -> bytes:
    """A weight pack in hama's format (the table, then each tensor 16-byte aligned)."""
    kinds = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}
    table, blob = b"", b""
    for name, array in tensors.items():
        blob += b"\0" * (-len(blob) % 16)
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        table += struct.pack("<H", len(name)) + name.encode()
        table += bytes([kinds[array.dtype], array.ndim]) + struct.pack(
            f"<{array.ndim}I", *array.shape
        )
        table += struct.pack("<QQ", len(blob), len(data))
        blob += data
    head = b"HAMAPK" + bytes([1, 2]) + struct.pack("<I", len(tensors)) + table
    return head + b"\0" * (-len(head) % 16) + blob


def test_a_pack_is_read_whatever_its_table_leaves_for_alignment() -> None:
    for name in ("a", "ab", "abcdefg"):  # tables of several lengths
        tensors = {
            name: np.arange(6, dtype=np.float32).reshape(2, 3),
            "half": np.array([0.5, -2.0, 65504.0], np.float16),
        }
        got = hama_model.read_pack(pack(tensors))
        assert got[name].tolist() == [[0, 1, 2], [3, 4, 5]]
        assert got["half"].dtype == np.float32 and got["half"].tolist() == [0.5, -2.0, 65504.0]
    with pytest.raises(ValueError, match="not a hama weight pack"):
        hama_model.read_pack(b"PK\x03\x04" + bytes(20))


@pytest.fixture(scope="module")
def model() -> hama_model.PhonemeModel:
    return hama_model.PhonemeModel()


def test_the_tokens_are_hamas(model: hama_model.PhonemeModel) -> None:
    asr = hama.ASRModel()
    assert model.tokens == asr.decoder_tokens and model.blank == asr.blank_id


def test_the_graph_gives_as_many_frames_as_hamas_engine(model: hama_model.PhonemeModel) -> None:
    from hama import _engine

    hama.ASRModel()  # binds the engine's library
    for n in (201, 1600, 1601, 16_000, 42_400, 42_559, 479_840, 480_000, 800_000):
        frames = model.log_probs(np.zeros(n, np.int16)).shape[0]
        assert frames == _engine._LIB.hama_asr_num_frames(n), n


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def engine_log_probs(asr: object, audio: np.ndarray) -> np.ndarray:
    """hama's own engine's log-probabilities for `audio` (int16)."""
    wav = (audio.astype(np.float32) / 32768.0).reshape(1, -1)
    ref, lengths = asr.session.run(  # type: ignore[attr-defined]
        ["log_probs", "out_lengths"],
        {"waveform": wav, "waveform_lengths": np.array([wav.shape[1]], np.int64)},
    )
    return np.asarray(ref)[0, : int(np.asarray(lengths).reshape(-1)[0])]


def test_every_frame_is_heard_as_hamas_engine_hears_it(model: hama_model.PhonemeModel) -> None:
    files = sorted((SPEECH / "main").glob("*.wav"))[:10]
    if not files:
        pytest.skip(f"{SPEECH} is absent: the shared speech recordings are not on this machine")
    asr = hama.ASRModel()
    for f in files:
        audio = read(f)
        ref = engine_log_probs(asr, audio)
        got = model.log_probs(audio)
        assert got.shape == ref.shape, f.name
        assert (got.argmax(axis=1) == ref.argmax(axis=1)).all(), f.name
        # Probabilities, not log-probabilities: the engine rounds tiny ones differently.
        assert np.abs(np.exp(got) - np.exp(ref)).max() < 0.05, f.name


def test_a_pack_of_another_model_is_one_line_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = pack({"mel_fb": np.zeros((201, 80), np.float32)})
    for data in (other, other[:40], other[:8]):  # another model's, and packs cut short
        monkeypatch.setattr(hama_model, "pack_bytes", lambda data=data: data)
        with pytest.raises(BackendUnavailable) as caught:
            hama_model.PhonemeModel()
        message = str(caught.value)
        assert "\n" not in message and "install the hama version in the lock" in message


def test_past_30_s_the_last_frame_hears_what_hamas_engine_hears(
    model: hama_model.PhonemeModel,
) -> None:
    # The engine's last STFT frame is centred on sample 479 840 and reaches 200 past it: speech
    # there (after silence) is heard, not the reflection of the audio cut at the centre.
    files = sorted((SPEECH / "main").glob("*.wav"))[:1]
    if not files:
        pytest.skip(f"{SPEECH} is absent: the shared speech recordings are not on this machine")
    speech = read(files[0])
    loudest = int(np.abs(speech.astype(np.int32)).argmax())
    audio = np.zeros(hama_model.MAX_SAMPLES + 1600, np.int16)
    centre = (hama_model.MAX_STFT_FRAMES - 1) * hama_model.HOP
    audio[centre:] = speech[loudest - 100 :][: len(audio) - centre]
    ref = engine_log_probs(hama.ASRModel(), audio)
    got = model.log_probs(audio)
    assert got.shape == ref.shape
    np.testing.assert_allclose(np.exp(got[-1]), np.exp(ref[-1]), atol=5e-4)


def test_audio_too_short_to_pad_is_one_line(model: hama_model.PhonemeModel) -> None:
    assert model.log_probs(np.zeros(201, np.int16)).shape == (1, len(model.tokens))
    for n in (0, 200):
        with pytest.raises(ValueError, match=r"^\d+ samples of audio: the model needs over 200$"):
            model.log_probs(np.zeros(n, np.int16))
