"""The "ask" phrases the ears and the link both read (`pendant.core.asking.after_ask_phrase`)."""

from __future__ import annotations

import pytest

from pendant.core.asking import after_ask_phrase

PHRASES = ["ask home assistant", "ask jarvis"]


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("ask home assistant what time is it", "what time is it"),
        ("Ask Home Assistant, what's a good substitute?", "what's a good substitute?"),
        ("ASK HOMEASSISTANT: is it raining", "is it raining"),
        ("Ask home-assistant... add milk", "add milk"),
        ("Ask Jarvis what day it is", "what day it is"),
        # Whisper base on espeak-ng's "Home Assistant": a slip in three letters after "ask".
        ("Ask Thomas Instant, what is a good substitute?", "what is a good substitute?"),
        ("ask oh my assistant, what is the time", "what is the time"),
        ("Ask Home Assistant.", ""),  # the phrase alone: the caller decides it asks nothing
        ("Ask Hôme Assistant now", "now"),  # accents fold like any other letter
    ],
)  # fmt: skip
def test_a_phrase_at_the_start_is_stripped(text: str, rest: str) -> None:
    assert after_ask_phrase(text, PHRASES) == rest


@pytest.mark.parametrize(
    "text",
    [
        "what is a good substitute for eggs",  # no phrase
        "I'll ask Home Assistant later",  # not at the start
        "Ask how much it is",  # "ask" and something else
        "ask Holmes about it",
        "ask Jarvisson what day it is",  # the phrase ends inside a word
        "ask",
        "",
        "... ",
    ],
)
def test_anything_else_is_no_phrase(text: str) -> None:
    assert after_ask_phrase(text, PHRASES) is None


def test_no_phrases_means_none() -> None:
    assert after_ask_phrase("ask home assistant what time is it", []) is None
