"""The warnings the ears give about the wearer's own sentences
(pendant.ears.sentence_check).

Against the demo home's real grammar, NLU and CMU dictionary; espeak-ng left out, as on the
image, so a word no dictionary has gets only the letter-by-letter stand-in.
"""

from __future__ import annotations

import asyncio

import pytest

from pendant.core.events import MAX_EVENT_BYTES, Sentences, SentenceSet, SentenceWarning
from pendant.ears.asr import pronounce
from pendant.ears.sentence_check import (
    examples,
    fitted,
    sentence_warnings_async,
)
from pendant.ears.service import with_sentences
from pendant.ears.understand.grammar import Grammar, TemplateCompiler, build_grammar
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import demo_config
from tests.support.phone_sets import WARNINGS

pytest.importorskip("pocketsphinx")

SETS = [
    SentenceSet(
        intent="PartyMode",
        sentences=[
            "[it's] party time",  # fine
            "turn on the kitchen lights",  # Home Assistant's HassTurnOn, the better match
            "zxqv now",  # a word with no pronunciation
            "(start | begin) the {name} party",  # the home's names (EcoBee) are not its words
        ],
    ),
]


@pytest.fixture(scope="module")
def checked() -> tuple[Grammar, IntentParser, dict[str, str]]:
    config = with_sentences(demo_config(), SETS)
    grammar = build_grammar(config)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pronounce, "espeak_phones", lambda word: None)
        guessed = pronounce.pronounce(grammar.words).guessed
    return grammar, IntentParser(config), guessed


def test_a_shadowed_sentence_and_an_unpronounceable_word_are_warned_a_fine_one_is_not(
    checked: tuple[Grammar, IntentParser, dict[str, str]],
) -> None:
    grammar, parser, guessed = checked
    assert guessed["zxqv"] == pronounce.LETTERS and guessed["ecobee"] == pronounce.LETTERS
    warnings = asyncio.run(sentence_warnings_async(demo_config(), SETS, grammar, parser, guessed))
    assert warnings == [SentenceWarning(**w) for w in WARNINGS]


def test_a_word_espeak_ng_made_up_is_a_milder_warning(
    checked: tuple[Grammar, IntentParser, dict[str, str]],
) -> None:
    grammar, parser, _ = checked
    guessed = {"zxqv": pronounce.ESPEAK}
    warnings = asyncio.run(
        sentence_warnings_async(demo_config(), SETS[:1], grammar, parser, guessed)
    )
    assert [w.reason for w in warnings if w.sentence == "zxqv now"] == [
        "'zxqv' is in no dictionary: its sound is espeak-ng's guess"
    ]


def test_examples_use_every_word_of_a_template_they_can() -> None:
    graph = TemplateCompiler(demo_config()).graph("PartyMode", "(start | begin) the [big] party")
    found = examples(graph, 3)
    assert len(found) == 2  # a third would add no word
    assert {w for s in found for w in s} == {"start", "begin", "the", "big", "party"}
    assert all(s[-2:] == ["big", "party"] or s[-2:] == ["the", "party"] for s in found)


def test_warnings_that_would_overflow_the_event_are_dropped_not_the_event() -> None:
    sets = [SentenceSet(intent=f"Intent{i}", sentences=["x" * 198 + f"{i:02d}"]) for i in range(20)]
    many = [
        SentenceWarning(intent=f"Intent{i}", sentence="x" * 198 + f"{i:02d}", reason="r" * 100)
        for i in range(10)
    ]
    event = fitted(Sentences(device_id="pendant-demo", sets=sets, warnings=many))
    assert len(event.to_json()) <= MAX_EVENT_BYTES
    assert 0 < len(event.warnings) < 10 and event.warnings == many[: len(event.warnings)]
    assert event.sets == sets
