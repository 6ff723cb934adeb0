"""When a sentence is over (pendant.ears.endpoint): the closed set says whether anything the
speaker might still add would change it, and the ears end such an utterance without waiting
for the hangover."""

from __future__ import annotations

import pytest

from pendant.app.local_broker import LocalBroker
from pendant.core.config import Config
from pendant.ears.endpoint import sentence_is_over
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.wordgraph import WordGraph
from tests.conftest import hearing_config, speech_files
from tests.support.pipeline import run_files


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


@pytest.mark.parametrize(
    ("text", "over"),
    [
        ("set the kitchen lights to blue", True),  # only "please", "for me" may follow
        ("turn off lights in the office", True),
        ("set a timer for five minutes", False),  # "... and ten seconds"
        ("turn off the tv", False),  # "... in the kitchen"
        ("set a timer for five", False),  # no sentence: "minutes" is still to come
    ],
)
def test_a_sentence_is_over_when_only_filler_may_follow(
    text: str, over: bool, grammar: Grammar
) -> None:
    assert sentence_is_over(text, grammar) is over


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


def test_a_confident_sentence_that_could_go_on_waits_only_the_sentence_hangover(
    brokers: tuple[LocalBroker, LocalBroker],
) -> None:
    # "what's the temperature" may go on ("... in the kitchen"), so it is not over; heard
    # confidently, it ends after vad.sentence_hangover_ms of quiet, not after the hangover,
    # which here is far longer than the silence between the files: waiting for it would
    # make the two one utterance.
    files = {f.stem: f for f in speech_files("main")}
    played = [files["what's the temperature"], files["cancel all timers"]]
    config: Config = hearing_config()
    vad = config.vad.model_copy(update={"hangover_ms": 5000, "sentence_hangover_ms": 300})
    got = run_files(config.model_copy(update={"vad": vad}), played, brokers)
    names = [m["name"] for t, m in got.messages if "/intent/" in t and not t.startswith("hermes")]
    assert names == ["HassClimateGetTemperature", "HassCancelAllTimers"]
