"""When a sentence is over (pendant.ears.endpoint): the closed set says whether anything the
speaker might still add would change it, and the ears end such an utterance without waiting
for the hangover."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile

from pendant.app.local_broker import LocalBroker
from pendant.core.config import Config
from pendant.core.events import Slot
from pendant.ears.audio import RATE_HZ
from pendant.ears.endpoint import sentence_is_over
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentMatch, IntentParser
from pendant.ears.understand.wordgraph import WordGraph
from tests.conftest import hearing_config, speech_files, tool
from tests.support.pipeline import run_files, slot_values


def test_continuations_are_every_way_the_graph_goes_on() -> None:
    # "turn off tv", then optionally "please" or "in kitchen".
    arcs = [(0, 1, "turn"), (1, 2, "off"), (2, 3, "tv"), (3, 4, "please"), (3, 5, "in"),
            (5, 4, "kitchen")]  # fmt: skip
    grammar = Grammar(WordGraph(6, 0, frozenset({3, 4}), arcs), [], "test")
    assert sorted(grammar.continuations(["turn", "off", "tv"], 8) or []) == [
        ["in", "kitchen"],
        ["please"],
    ]
    assert grammar.continuations(["turn", "off", "tv", "please"], 8) == []
    assert grammar.continuations(["turn", "off"], 8) is None  # no sentence
    assert grammar.continuations(["turn", "off", "tv"], 1) is None  # more than asked for


@pytest.fixture
def parser(config: Config) -> IntentParser:
    return IntentParser(config)


@pytest.mark.parametrize(
    ("text", "over"),
    [
        ("set the kitchen lights to blue", True),  # only "please", "for me" may follow
        ("turn off lights in the office", True),
        # "... brightness", "... like": the same intent with the same slots.
        ("set the bed light to fifty percent", True),
        ("what's the weather in new york", True),
        ("set a timer for five minutes", False),  # "... and ten seconds"
        ("turn off the tv", False),  # "... in the kitchen"
        ("is the front door locked", False),  # "... in the office": another slot
        ("set a timer for five", False),  # no sentence: "minutes" is still to come
    ],
)
def test_a_sentence_is_over_when_what_may_follow_changes_nothing(
    text: str, over: bool, grammar: Grammar, parser: IntentParser
) -> None:
    match = parser.parse(text)
    assert match is not None or not over
    assert (match is not None and sentence_is_over(text, match, grammar, parser)) is over


def test_a_continuation_that_changes_a_slot_keeps_the_sentence_open() -> None:
    # "turn off tv" may go on "please" or "now" (filler, never parsed); then "loudly" too,
    # which is parsed: to the same meaning, then to another, then to none.
    arcs = [(0, 1, "turn"), (1, 2, "off"), (2, 3, "tv"), (3, 4, "please"), (3, 4, "now")]
    grammar = Grammar(WordGraph(5, 0, frozenset({3, 4}), arcs), [], "test")
    tv = [Slot(name="name", value="TV", raw_value="tv", entity="name")]
    said = IntentMatch("HassTurnOff", tv, "turn off tv")
    assert sentence_is_over("turn off tv", said, grammar, _Parser(said))
    more = [*arcs, (3, 4, "loudly")]
    grammar = Grammar(WordGraph(5, 0, frozenset({3, 4}), more), [], "test")
    assert sentence_is_over("turn off tv", said, grammar, _Parser(said))
    other = IntentMatch(
        "HassTurnOff", [Slot(name="name", value="Radio", raw_value="", entity="name")], ""
    )
    assert not sentence_is_over("turn off tv", said, grammar, _Parser(said, loudly=other))
    assert not sentence_is_over("turn off tv", said, grammar, _Parser(said, loudly=None))


class _Parser:
    """Parses every sentence to `said`, but one ending in a word of `by_last_word` to its
    value there."""

    def __init__(self, said: IntentMatch, **by_last_word: IntentMatch | None) -> None:
        self.said, self.by_last_word = said, by_last_word

    def parse(self, text: str, here: str | None = None) -> IntentMatch | None:
        return self.by_last_word.get(text.split()[-1], self.said)


def test_a_finished_sentence_does_not_wait_for_the_hangover(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    # A hangover twice the silence between the two files (1.5 s): waiting for it would make
    # them one utterance. The first sentence is over, so it goes out on its own. (With 5 s the
    # guess, made on the quiet so far repeated to the hangover, scored under the floor.)
    files = {f.stem: f for f in speech_files("main")}
    played = [files["timer status"], files["cancel all timers"]]
    config: Config = hearing_config()
    config = config.model_copy(update={"vad": config.vad.model_copy(update={"hangover_ms": 3000})})
    got = run_files(config, played, brokers)
    names = [m["name"] for t, m in got.messages if "/intent/" in t and not t.startswith("hermes")]
    assert names == ["HassTimerStatus", "HassCancelAllTimers"]


def test_a_confident_sentence_that_could_go_on_waits_for_the_hangover(
    brokers: tuple[LocalBroker, LocalBroker], tmp_path: Path
) -> None:
    # "turn on the lights" is a confident command that "in the kitchen" would change: after a
    # pause of 300 ms (espeak-ng, tools/measure_pauses.py) the ears must not act on it alone.
    # Ending such a sentence after 300 ms of quiet did (every light in the home on).
    pauses = tool("measure_pauses")
    voice = tool("speech_sets").VOICES[0]
    cut = pauses.Cut(
        "turn on the lights in the kitchen", "HassTurnOn", {}, 4, True, voice, pause_ms=300
    )
    wav = tmp_path / "paused.wav"
    soundfile.write(wav, pauses.render(cut), RATE_HZ, subtype="PCM_16")
    got = run_files(hearing_config(), [wav], brokers)
    intents = [m for t, m in got.messages if "/intent/" in t and not t.startswith("hermes")]
    assert [(m["name"], slot_values(m)) for m in intents] == [
        ("HassTurnOn", {"area": "Kitchen", "domain": "light"})
    ]
