from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pendant.core.config import VadConfig
from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.ears.audio import RATE_HZ, Chunk
from pendant.ears.audio.wav import read_audio
from pendant.ears.vad import Segmenter, SileroNet, SileroVad, Utterance
from tests.conftest import demo_config, speech_files

CHUNK_MS = 30
N = RATE_HZ * CHUNK_MS // 1000


@pytest.fixture(scope="module")
def silero() -> SileroVad:
    return SileroVad(model_path(demo_config(), "silero-vad"))


def segment(audio: np.ndarray, silero: SileroVad, **vad: object) -> list[Utterance]:
    seg = Segmenter(VadConfig(**vad), silero, CHUNK_MS)  # type: ignore[arg-type]
    out: list[Utterance] = []
    for i in range(0, len(audio) - N + 1, N):
        out.extend(seg.push(Chunk(audio[i : i + N], (i + N) * 1000 // RATE_HZ)))
    out.extend(seg.flush())
    return out


def padded(audio: np.ndarray, before_s: float = 1.0, after_s: float = 1.5) -> np.ndarray:
    return np.concatenate(
        [
            np.zeros(int(RATE_HZ * before_s), np.int16),
            audio,
            np.zeros(int(RATE_HZ * after_s), np.int16),
        ]
    )


def room_noise(seconds: float, level: float = 800.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    white = rng.standard_normal(int(RATE_HZ * seconds))
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(400) / 400, mode="same")
    return (brown / np.abs(brown).max() * level).astype(np.int16)


def test_silence_and_room_noise_give_no_utterance(silero: SileroVad) -> None:
    assert segment(np.zeros(RATE_HZ * 10, np.int16), silero) == []
    assert segment(room_noise(10), silero) == []


def test_each_recorded_command_is_one_utterance_with_pre_roll(silero: SileroVad) -> None:
    files = [f for f in speech_files("main") if not f.name.startswith("oov_")][:8]
    for path in files:
        audio = read_audio(path)
        utterances = segment(padded(audio), silero)
        assert len(utterances) == 1, path.name
        u = utterances[0]
        # Pre-roll: the cut starts before the first speech frame, so no onset is clipped.
        assert len(u.audio) >= u.speech_ms * RATE_HZ // 1000
        # Speech ends inside the file, not in the padding after it.
        end_s = u.speech_end_ms / 1000
        assert 1.0 < end_s <= 1.0 + len(audio) / RATE_HZ + 0.1, path.name


def test_hangover_sets_how_much_silence_ends_an_utterance(silero: SileroVad) -> None:
    audio = read_audio(speech_files("main")[0])
    gap = np.zeros(int(RATE_HZ * 0.8), np.int16)
    two = padded(np.concatenate([audio, gap, audio]))
    # The recording's own quiet head and tail widen the gap between the two copies.
    assert len(segment(two, silero, hangover_ms=300)) == 2
    assert len(segment(two, silero, hangover_ms=3000)) == 1


def test_long_speech_is_cut_at_max_utterance(silero: SileroVad) -> None:
    audio = read_audio(speech_files("main")[0])
    long = padded(np.concatenate([audio] * 4))
    for u in segment(long, silero, max_utterance_s=2.0, hangover_ms=3000):
        assert len(u.audio) <= RATE_HZ * 2.0 + N


def test_the_numpy_network_gives_onnxruntimes_numbers(silero: SileroVad) -> None:
    """SileroNet runs the ONNX file's weights in numpy; onnxruntime (in the venv for the
    recogniser's process) runs the file itself: the same probabilities and state, window by
    window, over speech, silence and noise."""
    ort = pytest.importorskip("onnxruntime")
    path = model_path(demo_config(), "silero-vad")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    net = SileroNet(path)
    rng = np.random.default_rng(7)
    speech = [read_audio(f) for f in speech_files("main")[:3]]
    noise = (rng.standard_normal(RATE_HZ) * 300).astype(np.int16)
    loud = np.tile(np.array([32767, -32768], np.int16), RATE_HZ // 2)  # overflowed the gates
    audio = np.concatenate([*speech, noise, np.zeros(5 * RATE_HZ, np.int16), loud])
    x = audio.astype(np.float32) / 32768
    state, mine = np.zeros((2, 1, 128), np.float32), np.zeros((2, 128), np.float32)
    context, most, probabilities = np.zeros(64, np.float32), 0.0, []
    for k in range(len(x) // 512):
        window = np.concatenate((context, x[k * 512 : (k + 1) * 512]))
        (p,), state = session.run(
            None, {"input": window[None], "state": state, "sr": np.array(16000)}
        )
        q, mine = net.run(window, mine)
        # The cell's values reach ~100 on silence: float32 rounding there is relative.
        drift = np.abs(state[:, 0] - mine).max() / max(1.0, float(np.abs(mine).max()))
        most = max(most, abs(float(p[0]) - q), 10 * float(drift))
        probabilities.append(q)
        context = window[-64:]
    assert most < 1e-4
    assert min(probabilities) < 0.1 and max(probabilities) > 0.9  # it heard both


def test_a_file_that_is_not_silero_is_one_line_naming_the_fix(tmp_path) -> None:
    broken = tmp_path / "silero_vad_16k_op15.onnx"
    broken.write_bytes(b"\x00not a model")
    with pytest.raises(ModelError, match="pendant models fetch silero-vad"):
        SileroNet(broken)


def test_the_ears_service_loads_no_onnxruntime() -> None:
    """The VAD was the ears' service's only use of onnxruntime (the recogniser runs it in its
    own process, the speaker check loads it when a voice is enrolled): 7.5 MB of imports and
    a session's 5 MB no longer held while the room is quiet."""
    probe = "import sys, pendant.ears.service; print(sorted(m for m in sys.modules if 'onnx' in m))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['pendant.core.onnx_proto']"
