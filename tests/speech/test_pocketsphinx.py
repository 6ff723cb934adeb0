"""Real decoding of recorded commands with the pocketsphinx backend (no mocks)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.names import normalize
from pendant.ears.asr.pocketsphinx_backend import PocketsphinxRecognizer
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import SPEECH


@pytest.fixture(scope="module")
def recognizer(config: Config, grammar: Grammar):  # type: ignore[no-untyped-def]
    rec = PocketsphinxRecognizer(config, grammar)
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def nlu(config: Config) -> IntentParser:
    return IntentParser(config)


def wavs(subset: str) -> list[Path]:
    folder = SPEECH / subset
    if not folder.is_dir():
        pytest.skip(f"test recordings absent: {folder} (../shared beside the repo)")
    return sorted(folder.glob("*.wav"))


def read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def accepted_intent(rec: PocketsphinxRecognizer, nlu: IntentParser, audio: np.ndarray):  # type: ignore[no-untyped-def]
    result = rec.transcribe(audio)
    if result is None or result.confidence < rec.min_confidence:
        return None, result
    return nlu.parse(result.text), result


@pytest.mark.slow
def test_commands_are_understood(
    recognizer: PocketsphinxRecognizer, nlu: IntentParser, grammar: Grammar
) -> None:
    # The human recordings only: pocketsphinx is an option now, not the default, and the whole
    # set is tools/measure_asr.py's to score (--backend pocketsphinx).
    files = [p for p in wavs("main") if not p.stem.startswith("oov_")]
    correct, wrong = 0, []
    for path in files:
        expected = nlu.parse(path.stem)
        assert expected is not None, f"{path.stem!r} is not a command of the demo home"
        got, result = accepted_intent(recognizer, nlu, read(path))
        assert result is None or grammar.accepts(normalize(result.text))  # closed set only
        if got is not None and (got.name, got.slot_values()) == (
            expected.name,
            expected.slot_values(),
        ):
            correct += 1
        else:
            wrong.append((path.stem, result))
    assert correct / len(files) >= 0.9, f"{correct}/{len(files)} right; wrong: {wrong}"


@pytest.mark.slow
def test_out_of_vocabulary_speech_is_rejected(
    recognizer: PocketsphinxRecognizer, nlu: IntentParser
) -> None:
    oov = [p for p in wavs("main") if p.stem.startswith("oov_")]
    assert oov
    for path in oov:
        got, result = accepted_intent(recognizer, nlu, read(path))
        assert got is None, (path.stem, result)


def test_noise_and_silence_are_rejected(
    recognizer: PocketsphinxRecognizer, nlu: IntentParser
) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(32_000) / 16_000
    for audio in [
        (rng.standard_normal(32_000) * 3000).astype(np.int16),
        (rng.standard_normal(32_000) * 30).astype(np.int16),
        (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16),
        np.zeros(800, dtype=np.int16),
    ]:
        got, result = accepted_intent(recognizer, nlu, audio)
        assert got is None, result


def test_confidence_in_range(recognizer: PocketsphinxRecognizer) -> None:
    path = next(iter(wavs("main")), None)
    assert path is not None
    result = recognizer.transcribe(read(path))
    assert result is not None and 0.0 <= result.confidence <= 1.0


def test_confidence_does_not_depend_on_how_big_the_grammar_is(
    config: Config, grammar: Grammar, recognizer: PocketsphinxRecognizer
) -> None:
    # The same words heard in the home's whole closed set and in its core alone score the
    # same: the gaps come from the sentence aligned on its own, not from the search.
    assert grammar.core is not None
    small = PocketsphinxRecognizer(config, Grammar(grammar.core, grammar.names, "core"))
    audio = read(SPEECH / "main" / "timer status.wav")
    big_text, *big = recognizer.score(audio)
    small_text, *alone = small.score(audio)
    assert big_text == small_text == "timer status"
    # Within the dither's noise (scored from the grammar's own search, the big grammar's
    # gaps were 0.05-0.1 larger).
    assert big == pytest.approx(alone, abs=0.01)


def test_a_sentence_outside_the_core_needs_a_better_fit() -> None:
    from pendant.ears.asr.pocketsphinx_backend import UTT_GAP_REF, WORD_GAP_REF, confidence

    # A fit that passes in the core, and fails outside it.
    utt, word = 0.8 * UTT_GAP_REF, 0.8 * WORD_GAP_REF
    assert confidence(utt, word, in_core=True) > 0.5 > confidence(utt, word, in_core=False)
    assert confidence(UTT_GAP_REF, 0.0, in_core=True) == pytest.approx(0.5)
