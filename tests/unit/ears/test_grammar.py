"""The closed set: built from the templates and the home, minimal, and snapping to it works."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pendant.core.config import Config, CustomSentences
from pendant.core.errors import ConfigError
from pendant.core.names import normalize, number_words
from pendant.ears.understand.grammar import Grammar, check_sentences
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import SPEECH

# Always checked, testdata or not: the phrasings the recordings use and a few more.
SENTENCES = [
    "turn on the kitchen lights",
    "turn off lights in the office",
    "turn the lights on",
    "set a timer for 5 minutes",
    "create a timer for 5 and a half minutes",
    "start a timer for 1 hour and 8 minutes",
    "set a timer for 1 minute",
    "pause",
    "next",
    "resume TV",
    "is the Front Door locked",
    "what's the temperature",
    "open the blinds in the Office",
    "add milk to my shopping list",
    "activate Mood Lighting",
    "where is my phone",
]


def recorded_sentences() -> list[str]:
    if not SPEECH.is_dir():
        pytest.skip(f"test recordings absent: {SPEECH}")
    return sorted(p.stem for p in SPEECH.glob("*/*.wav") if not p.stem.startswith("oov_"))


def test_normalize() -> None:
    assert normalize("What's the 5%?") == ["what's", "the", "five", "percent"]
    assert normalize("Set a timer for 25-minutes, please!") == [
        "set", "a", "timer", "for", "twenty", "five", "minutes", "please",
    ]  # fmt: skip
    assert normalize("  ") == []
    assert number_words(100) == "one hundred"
    assert number_words(47) == "forty seven"


@pytest.mark.parametrize("sentence", SENTENCES)
def test_sentence_in_closed_set(grammar: Grammar, sentence: str) -> None:
    assert grammar.accepts(normalize(sentence)), sentence


def test_every_recorded_sentence_in_closed_set(grammar: Grammar) -> None:
    missing = [s for s in recorded_sentences() if not grammar.accepts(normalize(s))]
    assert missing == []


def test_rejects_what_the_home_cannot_mean(grammar: Grammar) -> None:
    for sentence in [
        "turn on the",  # a prefix is not a sentence
        "turn on the front door",  # a lock does not turn on
        "set the standing light to fifty percent",  # that light cannot dim
        "turn on the garage lights",  # no such area
        "oov two",
        "",
    ]:
        assert not grammar.accepts(normalize(sentence)), sentence


def test_graph_is_a_small_minimal_dfa(grammar: Grammar) -> None:
    g = grammar.graph
    # Timer numbers alone would be millions of sentences; Home Assistant's templates for
    # this 19-device home make about 1,200 states.
    assert g.n_states < 3000
    keys = [(src, word) for src, _, word in g.arcs]
    assert len(keys) == len(set(keys)), "not deterministic"
    out: dict[int, list[tuple[int, str]]] = {s: [] for s in range(g.n_states)}
    into: dict[int, list[int]] = {s: [] for s in range(g.n_states)}
    for src, dst, word in g.arcs:
        out[src].append((dst, word))
        into[dst].append(src)
        assert src < dst, "states are numbered in topological order"
    # Every state lies on some sentence: reachable from start and reaching a final.
    for start, edges in ((g.start, lambda s: [d for d, _ in out[s]]), (None, into.get)):
        seen = set(g.finals) if start is None else {start}
        todo = deque(seen)
        while todo:
            for nxt in edges(todo.popleft()) or []:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert len(seen) == g.n_states
    # Minimal: no two states share finality and outgoing arcs (targets already unique).
    sigs = {(s in g.finals, tuple(sorted(out[s], key=lambda a: a[1]))) for s in out}
    assert len(sigs) == g.n_states


def test_sampled_sentences_are_accepted_and_understood(config: Config, grammar: Grammar) -> None:
    nlu = IntentParser(config, home_assistant=False)
    for sentence in grammar.sample(np.random.default_rng(7), 300):
        assert grammar.accepts(sentence.split())
        assert nlu.parse(sentence) is not None, sentence


def test_snap(grammar: Grammar) -> None:
    assert grammar.snap(normalize("turn on the kitchen lights")) == (
        "turn on the kitchen lights",
        1.0,
    )
    text, sim = grammar.snap(normalize("um well turn on the kitchen lights")) or ("", 0)
    assert text == "turn on the kitchen lights"
    assert sim == pytest.approx(1 - 2 / 7)
    # Politeness is part of the set.
    assert grammar.snap(normalize("please turn on the kitchen lights")) == (
        "please turn on the kitchen lights",
        1.0,
    )
    # "now" is not in the set: one word off.
    text, sim = grammar.snap(normalize("set a timer for 12 minutes now")) or ("", 0)
    assert text.startswith("set a timer for twelve minutes")  # "now" dropped or mended
    assert sim == pytest.approx(1 - 1 / max(7, len(text.split())))  # 7 words said
    text, sim = grammar.snap(normalize("what's the weather in new york city")) or ("", 0)
    assert text.startswith("what's the weather in new york")  # "city" dropped or mended
    assert sim == pytest.approx(6 / 7)
    assert grammar.snap([]) is None
    _, sim = grammar.snap(["completely", "unrelated", "words", "here"]) or ("", 1.0)
    assert sim < 0.5


def test_names_and_custom_sentences(config: Config, grammar: Grammar) -> None:
    assert "Kitchen" in grammar.names and "EcoBee" in grammar.names
    assert grammar.accepts(normalize("ring my phone"))
    assert {"ecobee", "kitchen", "hundred"} <= grammar.words


def test_names_alone_are_not_commands(config: Config, grammar: Grammar) -> None:
    # Home Assistant turns on "the kitchen lights" said alone; without a wake word that is
    # any sentence naming a thing, so a sentence needs a word that says what to do.
    assert not grammar.accepts(normalize("the kitchen lights"))
    assert not grammar.accepts(normalize("kitchen lights"))
    assert grammar.accepts(normalize("kitchen lights on"))
    assert grammar.accepts(normalize("turn on the kitchen lights please"))
    # The wearer's own sentences are held to the same rule, with a line saying what to do.
    own = CustomSentences(intent="Lamp", sentences=["[the] {name}"])
    with pytest.raises(ConfigError, match=r"home.sentences\[0\] \(Lamp\).*nothing but names"):
        check_sentences(config, [own])
    check_sentences(config, [CustomSentences(intent="Lamp", sentences=["wake [the] {name}"])])


def test_home_assistant_sentences_join_the_closed_set(config: Config, grammar: Grammar) -> None:
    # Phrasings from Home Assistant's templates, none of them in ours; the NLU, without
    # Home Assistant's whole set behind it, understands each as the ears would output it.
    nlu = IntentParser(config, home_assistant=False)
    for sentence, intent in [
        ("turn on all the lights in the house", "HassTurnOn"),
        ("could you turn off the lights in the kitchen", "HassTurnOff"),
        ("what is the CO2 level of the Outdoor Humidity", "HassGetState"),
        ("turn the lights on in here", "HassTurnOn"),
        ("cancel the pizza timer", "HassCancelTimer"),
    ]:
        words = normalize(sentence)
        assert grammar.accepts(words), sentence
        assert not grammar.in_core(words), sentence
        match = nlu.parse(" ".join(words))
        assert match is not None and match.name == intent, sentence
    assert grammar.in_core(normalize("turn on the kitchen lights"))


def test_substitutions_are_the_words_that_keep_a_sentence_in_the_closed_set(
    grammar: Grammar,
) -> None:
    words = ["turn", "off", "the", "tv"]
    options = grammar.substitutions(words)
    assert len(options) == len(words)
    assert "on" in options[1] and "off" not in options[1]
    assert "switch" in options[0]
    for i, others in enumerate(options):
        for other in others:
            assert grammar.accepts([*words[:i], other, *words[i + 1 :]])
    assert grammar.substitutions(["turn", "off", "the", "moon"]) == [[], [], [], []]
    assert grammar.substitutions(["turn", "off"]) == [[], []]  # no sentence yet
