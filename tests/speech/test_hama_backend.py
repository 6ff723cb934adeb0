"""The hama backend: the CTC search on made-up frames, then real decoding (no mocks)."""

from __future__ import annotations

import itertools
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import AsrConfig, Config
from pendant.ears.asr import create_recognizer, hama_backend, rivals
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from pendant.ears.understand.wordgraph import WordGraph
from tests.conftest import SPEECH, SPEECH_CACHE, demo_config, speech_sets

OTHER_LANGUAGES = SPEECH.parent / "speech-other-languages"


@pytest.fixture(scope="module")
def recognizer(config: Config, grammar: Grammar):  # type: ignore[no-untyped-def]
    rec = hama_backend.HamaRecognizer(config, grammar)
    yield rec
    rec.close()


def read(path: Path) -> np.ndarray:
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared speech recordings are not on this machine")
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16_000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


# --- the search alone, on frames made up so that the answer is known -----------------------

BLANK = 3


def frames(*tokens: int) -> np.ndarray:
    """Log-probs (frames x 4 columns, column 3 the blank) that make each frame's token
    certain, with a little probability left for every other column."""
    lp = np.full((len(tokens), 4), np.log(0.01), dtype=np.float32)
    for t, tok in enumerate(tokens):
        lp[t, tok] = np.log(0.97)
    return lp


def said(n, lp: np.ndarray) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    """The words the search finds in `lp`, and the phones of the pronunciations it took."""
    _, path = n.search(lp, BLANK)
    return [word for word, _, _, _ in path], sum(len(tokens) for _, tokens, _, _ in path)


def net(arcs: list[tuple[int, int, str]], finals: set[int], spell: dict[str, list[int]]):  # type: ignore[no-untyped-def]
    """A search network of one graph, one spelling a word."""
    graph = WordGraph(
        n_states=1 + max(d for _, d, _ in arcs), start=0, finals=frozenset(finals), arcs=arcs
    )
    return hama_backend._Net([(graph, 0.0)], {w: [s] for w, s in spell.items()})


def test_search_follows_the_sounds_through_the_graph() -> None:
    # "ab" then "c", or "ab" then "a": a shared first word, two endings.
    n = net([(0, 1, "ab"), (1, 2, "c"), (1, 2, "a")], {2}, {"ab": [0, 1], "c": [2], "a": [0]})
    assert said(n, frames(BLANK, 0, 1, 1, BLANK, 2, BLANK)) == (["ab", "c"], 3)
    assert said(n, frames(0, 0, 1, 0, BLANK, BLANK)) == (["ab", "a"], 3)


def test_search_takes_any_pronunciation_of_a_word() -> None:
    # "ab" said as a-b or as c, then "c": the phones counted are the pronunciation's.
    graph = WordGraph(3, 0, frozenset({2}), [(0, 1, "ab"), (1, 2, "c")])
    n = hama_backend._Net([(graph, 0.0)], {"ab": [[0, 1], [2]], "c": [[2]]})
    assert said(n, frames(BLANK, 0, 1, BLANK, 2, BLANK)) == (["ab", "c"], 3)
    assert said(n, frames(BLANK, 2, BLANK, 2, BLANK)) == (["ab", "c"], 2)


def test_search_needs_a_blank_between_equal_tokens() -> None:
    # "aa" (two a's) against "a": without a blank between them, two a's are one.
    n = net([(0, 1, "aa"), (0, 1, "a")], {1}, {"aa": [0, 0], "a": [0]})
    assert said(n, frames(0, 0, 0, BLANK))[0] == ["a"]
    assert said(n, frames(0, BLANK, 0, BLANK))[0] == ["aa"]


def test_search_prefers_the_core_by_its_prior() -> None:
    core = WordGraph(2, 0, frozenset({1}), [(0, 1, "a")])
    full = WordGraph(2, 0, frozenset({1}), [(0, 1, "a"), (0, 1, "b")])
    spell = {"a": [[0]], "b": [[1]]}
    # One frame of "b" is worth log(0.97 / 0.01) ~ 4.6 over "a": more than a prior of 2,
    # less than one of 50.
    n = hama_backend._Net([(core, 0.0), (full, -2.0)], spell)
    score, _ = n.search(frames(BLANK, 1, BLANK), BLANK)
    assert said(n, frames(BLANK, 1, BLANK))[0] == ["b"]
    assert score > -1.0  # the score reported is the acoustic one, without the prior
    n = hama_backend._Net([(core, 0.0), (full, -50.0)], spell)
    assert said(n, frames(BLANK, 1, BLANK))[0] == ["a"]


def test_every_phone_has_tokens_of_the_model() -> None:
    import hama

    tokens = set(hama.ASRModel().decoder_tokens)
    assert {t for members in hama_backend.ARPABET.values() for t in members} <= tokens


def test_words_are_spelled_from_the_cmu_dictionary() -> None:
    words = ["area", "the", "off", "kitchen", "ecobee", "xqzw", "ß", "42", "!!"]
    spellings, guessed = hama_backend.spell_words(words)
    assert spellings["area"] == [["EH", "R", "IY", "AH"]]  # English, not the G2P's Spanish
    assert ["DH", "AH"] in spellings["the"] and ["DH", "IY"] in spellings["the"]
    assert ["AA", "F"] in spellings["off"]  # pronounce's extra variant
    assert spellings["kitchen"] == [["K", "IH", "CH", "AH", "N"]]
    assert "kitchen" not in guessed and "ecobee" in guessed  # espeak-ng or letters
    for word in words:  # every word gets some spelling of known phones
        assert spellings[word]
        assert all(v and set(v) <= set(hama_backend.ARPABET) for v in spellings[word])


def test_a_grammar_of_odd_words_decodes(config: Config) -> None:
    graph = WordGraph(3, 0, frozenset({2}), [(0, 1, "zzyzx"), (1, 2, "ßq"), (0, 2, "42")])
    rec = hama_backend.HamaRecognizer(config, Grammar(graph, [], "odd"))
    noise = np.random.default_rng(1).normal(0, 300, 16_000).astype(np.int16)
    result = rec.transcribe(noise)
    assert result is None or result.text in {"zzyzx ßq", "42"}
    rec.close()


def test_an_alignment_scores_the_tokens_the_frames_spell() -> None:
    lp = frames(BLANK, 0, 1, BLANK)
    a, b, c = rivals.best_alignments(lp, BLANK, [[0, 1], [0, 2], [0]])
    assert a > b and a > c
    # Two equal tokens need a blank between them.
    same, once = rivals.best_alignments(frames(0, 0, BLANK), BLANK, [[0, 0], [0]])
    assert once > same
    split, _ = rivals.best_alignments(frames(0, BLANK, 0), BLANK, [[0, 0], [0]])
    assert split > same


def test_a_word_the_sounds_fit_nearly_as_well_is_a_rival() -> None:
    # "a b": is the second word token 1 ("b") or token 2 ("c")? The frames say 1, by how much
    # decides whether "a c" is a rival.
    spell = {"a": [[0]], "b": [[1]], "c": [[2]]}
    for p_b, close in [(0.97, False), (0.55, True)]:
        lp = frames(BLANK, 0, BLANK, 1, BLANK)
        lp[3, 1], lp[3, 2] = np.log(p_b), np.log(0.98 - p_b)
        path = [("a", [0], 0, 2), ("b", [1], 3, 4)]
        found = rivals.close_rivals(lp, BLANK, path, [[], ["c"]], spell, lambda _: 0.0)
        assert found == (["a c"] if close else []), p_b
        # What the search charges a rival (the full closed set's prior) counts against it.
        assert rivals.close_rivals(lp, BLANK, path, [[], ["c"]], spell, lambda _: 8.0) == []


def test_the_search_gives_each_word_its_frames() -> None:
    n = net([(0, 1, "a"), (1, 2, "b"), (2, 3, "d")], {3}, {"a": [0], "b": [1], "d": [0]})
    _, path = n.search(frames(BLANK, 0, BLANK, 1, BLANK, 0, BLANK), BLANK)
    assert path == [("a", [0], 0, 1), ("b", [1], 2, 3), ("d", [0], 4, 5)]


def test_a_middle_word_is_weighed_on_its_own_frames_and_its_neighbours() -> None:
    # "a b d" or "a c d": the middle word's frames say 1 ("b") barely; the words around it
    # are clear, and the rival must explain them too.
    spell = {"a": [[0]], "b": [[1]], "c": [[2]], "d": [[0]]}
    lp = frames(BLANK, 0, BLANK, 1, BLANK, 0, BLANK)
    lp[3, 1], lp[3, 2] = np.log(0.55), np.log(0.43)
    path = [("a", [0], 0, 1), ("b", [1], 2, 3), ("d", [0], 4, 5)]
    options = [[], ["c"], []]
    assert rivals.close_rivals(lp, BLANK, path, options, spell, lambda _: 0.0) == ["a c d"]
    # Its window runs to the end of "d": one frame short, "a b d" could not be aligned at all.
    clear = frames(BLANK, 0, BLANK, 1, BLANK, 0, BLANK)
    assert rivals.close_rivals(clear, BLANK, path, options, spell, lambda _: 0.0) == []


def test_a_word_may_begin_with_the_token_the_word_before_ended_with() -> None:
    # As the search allows it: one spike of token 0 ends "a" and begins "b" ([0, 1]) or "c"
    # ([0, 2]), and the frame after it barely says 1. Read strictly, "a b" would need two
    # spikes of 0 with a blank between: four frames, where there are three, and no opinion
    # would be given.
    spell = {"a": [[0]], "b": [[0, 1]], "c": [[0, 2]]}
    lp = frames(0, 1, BLANK)
    lp[1, 1], lp[1, 2] = np.log(0.55), np.log(0.43)
    path = [("a", [0], 0, 0), ("b", [0, 1], 1, 2)]
    assert rivals.close_rivals(lp, BLANK, path, [[], ["c"]], spell, lambda _: 0.0) == ["a c"]


def _sentences(graph: WordGraph, state: int = 0) -> list[list[str]]:
    if state in graph.finals and not any(src == state for src, _, _ in graph.arcs):
        return [[]]
    found = [[]] if state in graph.finals else []
    for src, dst, word in graph.arcs:
        if src == state:
            found += [[word, *rest] for rest in _sentences(graph, dst)]
    return found


def test_without_a_beam_the_search_finds_the_best_alignment_of_any_sentence() -> None:
    # Small random graphs and frames, against every sentence aligned on its own
    # (rivals.best_alignments). No word begins with a token a word ends with: the search lets
    # such a pair share one spike only over two frames, the alignment in one.
    rng = np.random.default_rng(7)
    blank = 5
    checked = 0
    for trial in range(40):
        n_states = int(rng.integers(3, 6))
        arcs = [(0, 1, "w0")] + [
            (int(a), int(rng.integers(a + 1, n_states)), f"w{k + 1}")
            for k, a in enumerate(rng.integers(0, n_states - 1, size=int(rng.integers(2, 7))))
        ]
        finals = frozenset({n_states - 1, int(rng.integers(1, n_states))})
        graph = WordGraph(n_states, 0, finals, arcs)

        def spelling() -> list[int]:
            middle = rng.integers(0, 5, size=int(rng.integers(0, 3))).tolist()
            return [int(rng.integers(0, 2)), *middle, int(rng.integers(2, 5))]

        spell = {w: [spelling() for _ in range(int(rng.integers(1, 3)))] for _, _, w in arcs}
        logits = rng.normal(0, 3, size=(int(rng.integers(8, 20)), 6)).astype(np.float32)
        lp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        n = hama_backend._Net([(graph, 0.0)], spell)
        expected = max(
            (
                float(rivals.best_alignments(lp, blank, [list(itertools.chain(*variant))])[0])
                for sentence in _sentences(graph)
                if sentence
                for variant in itertools.product(*(spell[w] for w in sentence))
            ),
            default=float(rivals.NEG),
        )
        score, path = n.search(lp, blank, beam=float("inf"))
        if expected < rivals.NEG / 2:  # no sentence fits in so few frames
            assert path == [], trial
            continue
        assert score == pytest.approx(expected, abs=1e-3), trial
        checked += 1
        taken = list(itertools.chain(*(tokens for _, tokens, _, _ in path)))
        assert float(rivals.best_alignments(lp, blank, [taken])[0]) == pytest.approx(
            expected, abs=1e-3
        )
    assert checked >= 30  # most trials had a sentence to find


def test_a_sentence_that_falls_beyond_the_beam_is_dropped() -> None:
    # "a" is a whole sentence, "b c" one whose "c" the frames all but rule out: frame after
    # frame of "b" leaves "a" further behind, and "c" never comes within the beam.
    n = net([(0, 1, "a"), (0, 2, "b"), (2, 1, "c")], {1}, {"a": [0], "b": [1], "c": [2]})
    lp = frames(BLANK, 0, *[1] * 8)
    lp[:, 2] = np.log(1e-12)
    assert n.search(lp, BLANK) == (float(hama_backend.NEG), [])
    assert said(n, lp)[0] == []
    assert n.search(lp, BLANK, beam=float("inf"))[1]  # without the beam, the best of a bad lot
    assert said(n, frames(BLANK, 0, 1, BLANK))[0] == ["a"]  # a short while behind: kept


def test_the_search_takes_float64_frames() -> None:
    # Frames in float64 are searched as float32 ones: the word records compare a word's score
    # with the best into its graph state (float32), and a float64 score never equalled it, so
    # no word was recorded and the trace back never ended.
    n = net([(0, 1, "ab"), (1, 2, "c")], {2}, {"ab": [0, 1], "c": [2]})
    lp = frames(BLANK, 0, 1, BLANK, 2, BLANK)
    score, path = n.search(lp.astype(np.float64), BLANK)
    assert (score, path) == n.search(lp, BLANK)
    assert [w for w, *_ in path] == ["ab", "c"]


def test_the_beam_changes_no_sentence_of_the_recordings(recognizer) -> None:  # type: ignore[no-untyped-def]
    # The pruned search against the full one, on every recording of speech-en's main set.
    files = sorted((SPEECH / "main").glob("*.wav"))
    if not files:
        pytest.skip(f"{SPEECH / 'main'} is absent: the shared speech recordings are not here")
    for path in files:
        lp = recognizer.log_probs(read(path))
        lp = lp[recognizer.kept_frames(lp[:, recognizer.blank])]
        pruned = recognizer._net.search(lp, recognizer.blank)
        full = recognizer._net.search(lp, recognizer.blank, beam=float("inf"))
        assert [w for w, *_ in pruned[1]] == [w for w, *_ in full[1]], path.name
        assert pruned[0] == pytest.approx(full[0], abs=1e-3), path.name


# --- real recordings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "said", ["cancel all timers", "lock the Front Door", "turn off lights in the Office"]
)
def test_a_recording_is_recognised(recognizer, config: Config, said: str) -> None:  # type: ignore[no-untyped-def]
    result = recognizer.transcribe(read(SPEECH / "main" / f"{said}.wav"))
    assert result is not None
    assert result.text == said.lower()
    assert result.confidence >= config.asr.min_confidence
    nlu = IntentParser(config)
    match = nlu.parse(result.text)
    assert match is not None and match == nlu.parse(said)
    assert nlu.contested(match, result.rivals) is None, result.rivals


def test_a_sentence_the_sounds_fit_no_better_than_another_action_is_contested(
    recognizer, config: Config
) -> None:  # type: ignore[no-untyped-def]
    # espeak-ng's British voice says "unlock": the model hears it, but "lock" fits within
    # rivals.RIVAL_MARGIN, and a door is not worth the guess. "turn on the tv" against "switch
    # on the tv" is no contest (the same action), and a clear recording has no close rival.
    entry = next(e for e in espeak_entries() if e["file"].startswith("cmd_016_gbf170_"))
    result = recognizer.transcribe(read(SPEECH_CACHE / entry["file"]))
    assert result is not None and result.text == "unlock the front door"
    assert result.confidence >= config.asr.min_confidence
    nlu = IntentParser(config)
    match = nlu.parse(result.text)
    assert match is not None
    assert nlu.contested(match, result.rivals) == "lock the front door"
    clear = recognizer.transcribe(read(SPEECH / "main" / "lock the Front Door.wav"))
    assert clear is not None and "unlock the front door" not in clear.rivals


def espeak_entries() -> list[dict[str, object]]:
    manifest = speech_sets().generate(SPEECH_CACHE)
    return json.loads(Path(manifest).read_text())["files"]


@pytest.mark.parametrize(
    "path",
    [
        SPEECH / "main" / "oov_4.wav",
        OTHER_LANGUAGES / "de" / "generated" / "aktiviere Batteriewarnung Skript.wav",
        OTHER_LANGUAGES / "fr" / "allume la lumière.wav",
    ],
    ids=["english-non-command", "german", "french"],
)
def test_other_speech_is_not_confident(recognizer, config: Config, path: Path) -> None:  # type: ignore[no-untyped-def]
    result = recognizer.transcribe(read(path))
    assert result is None or result.confidence < config.asr.min_confidence
    if path.stem.startswith("oov_"):  # said holding the button, English talk is refused too
        assert result is None or result.held_confidence < config.asr.min_confidence_pressed


def test_a_one_word_command_is_the_wearers_not_a_bystanders(recognizer, config: Config) -> None:  # type: ignore[no-untyped-def]
    # A French speaker's "pause" fits "pause" by chance; the wearer's fits it far better.
    # Held, only a mishearing is ruled out.
    result = recognizer.transcribe(read(SPEECH / "main" / "pause.wav"))
    assert result is not None and result.text == "pause"
    assert result.confidence_for(pressed=True) >= config.asr.min_confidence_pressed
    assert result.confidence_for(pressed=False) == result.confidence
    french = recognizer.transcribe(read(OTHER_LANGUAGES / "fr" / "pause.wav"))
    assert french is None or french.confidence < config.asr.min_confidence


def test_silence_gives_nothing_confident(recognizer, config: Config) -> None:  # type: ignore[no-untyped-def]
    result = recognizer.transcribe(np.zeros(16_000, dtype=np.int16))
    assert result is None or result.confidence_for(pressed=True) < config.asr.min_confidence_pressed


def test_create_recognizer_loads_it(grammar: Grammar) -> None:
    config = demo_config(asr=AsrConfig(backend="hama"))
    rec = create_recognizer(config, grammar)
    try:
        assert isinstance(rec, hama_backend.HamaRecognizer)
        assert rec.guessed == {} or all(isinstance(v, str) for v in rec.guessed.values())
    finally:
        rec.close()
