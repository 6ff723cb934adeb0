"""The real voice encoder (the `ge2e-voice` model, `make models`) on real recordings: the one
speaker of speech-en's main set against the people of speech-other-languages."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from pendant.core.model_cache import model_path
from pendant.ears.speaker.encoder import EMBEDDING_SIZE, VoiceEncoder, similarity
from pendant.ears.speaker.torchfile import load_state_dict
from tests.conftest import SPEECH, demo_config

OTHER_LANGUAGES = SPEECH.parent / "speech-other-languages"


@pytest.fixture(scope="module")
def weights() -> Path:
    return model_path(demo_config(), "ge2e-voice")


@pytest.fixture(scope="module")
def encoder(weights: Path) -> VoiceEncoder:
    return VoiceEncoder.load(weights)


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def recordings(folder: Path, pattern: str) -> list[Path]:
    found = sorted(folder.glob(pattern))
    if not found:
        pytest.skip(f"{folder} is absent: the shared speech recordings are not on this machine")
    return found


def test_the_model_file_holds_resemblyzers_encoder(weights: Path) -> None:
    state = load_state_dict(weights)
    assert state["lstm.weight_ih_l0"].shape == (1024, 40)
    assert state["lstm.weight_hh_l2"].shape == (1024, 256)
    assert state["linear.weight"].shape == (EMBEDDING_SIZE, 256)
    # The optimiser's state in the same file is not part of what loads.
    assert not any(name.startswith("optimizer") for name in state)


def test_the_wearer_scores_above_other_people(encoder: VoiceEncoder) -> None:
    wearer = recordings(SPEECH / "main", "*.wav")
    others = recordings(OTHER_LANGUAGES, "*/*/*.wav")[::8]
    embeddings = [encoder.embed(read(p)) for p in wearer]
    assert all(e is not None for e in embeddings)
    enrolled = np.mean(embeddings[:5], axis=0)
    own = [similarity(enrolled, e) for e in embeddings[5:]]
    strangers = [
        similarity(enrolled, e) for p in others if (e := encoder.embed(read(p))) is not None
    ]
    assert len(strangers) > 0.9 * len(others)
    # Most of the wearer's commands score above nearly all other people's.
    assert np.median(own) > np.percentile(strangers, 95)
    assert np.mean(own) - np.mean(strangers) > 0.1
