"""When the ears hear a whole utterance again after the guess made in its end-of-speech quiet
(`Ears._worth_hearing_again`), with a scripted recogniser and a recorded command played in
conversation mode: a guess that nearly passed is heard again and may become the command; one
far below the floor (talk, other languages) is not, so its decode is not paid twice."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.events import Intent
from pendant.ears.asr import Transcription
from pendant.ears.audio.wav import WavSource
from pendant.ears.listener import HEAR_AGAIN_FROM
from pendant.ears.understand.grammar import Grammar
from tests.conftest import SPEECH
from tests.support.ears_support import bare_ears

RECORDING = SPEECH / "main" / "cancel all timers.wav"


class Scripted:
    """A closed set that hears "cancel all timers" with each of `scores` in turn, counting."""

    def __init__(self, *scores: float) -> None:
        self.scores = list(scores)
        self.hearings = 0

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        score = self.scores[min(self.hearings, len(self.scores) - 1)]
        self.hearings += 1
        return Transcription("cancel all timers", score)

    def close(self) -> None:
        pass


def played(config: Config, grammar: Grammar, recognizer: Scripted) -> list[Intent]:
    """The recording through the ears in conversation mode, faster than real time (the guess in
    the quiet is waited for); the intents published."""
    if not RECORDING.exists():
        pytest.skip(f"no shared recordings at {SPEECH}")
    config = config.model_copy(
        update={"audio": config.audio.model_copy(update={"realtime": False})}
    )
    ears, published = bare_ears(config, grammar, recognizer)
    ears.source = WavSource(config.audio, [RECORDING])
    asyncio.run(ears.run())
    return [e for e in published if isinstance(e, Intent)]


def test_a_guess_that_nearly_passed_is_heard_again_and_may_become_the_command(
    config: Config, grammar: Grammar
) -> None:
    floor = config.asr.min_confidence
    recognizer = Scripted(HEAR_AGAIN_FROM * floor, (1 + floor) / 2)
    intents = played(config, grammar, recognizer)
    assert recognizer.hearings == 2
    assert [i.name for i in intents] == ["HassCancelAllTimers"]


def test_a_guess_far_below_the_floor_is_not_heard_again(config: Config, grammar: Grammar) -> None:
    floor = config.asr.min_confidence
    # The second hearing would pass: it is never asked for.
    recognizer = Scripted(HEAR_AGAIN_FROM * floor * 0.9, (1 + floor) / 2)
    assert played(config, grammar, recognizer) == []
    assert recognizer.hearings == 1


def test_a_confident_guess_stands_without_a_second_hearing(
    config: Config, grammar: Grammar
) -> None:
    recognizer = Scripted(0.99)
    assert [i.name for i in played(config, grammar, recognizer)] == ["HassCancelAllTimers"]
    assert recognizer.hearings == 1
