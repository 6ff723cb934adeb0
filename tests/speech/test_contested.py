"""A sentence one word from another action, heard nearly as well as it (the recogniser's
`Transcription.rivals`), gives no intent: the ears drop it, and say nothing of its words
unless the wearer held the button. Which rivals the sounds allow is
`tests/speech/test_hama_backend.py`'s business; here the recogniser is scripted."""

from __future__ import annotations

import asyncio

import numpy as np

from pendant.core.config import Config
from pendant.core.events import Event, Intent, NotRecognized
from pendant.ears.asr import Transcription
from pendant.ears.understand.grammar import Grammar
from pendant.ears.vad import Utterance
from tests.support.ears_support import bare_ears


class Scripted:
    """Heard `text` with full confidence, and these rivals."""

    def __init__(self, text: str, rivals: tuple[str, ...]) -> None:
        self.heard = Transcription(text, 1.0, rivals=rivals)
        self.guessed: dict[str, str] = {}

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        return self.heard

    def close(self) -> None:
        pass


def hear(config: Config, grammar: Grammar, rivals: tuple[str, ...], pressed: bool) -> list[Event]:
    ears, published = bare_ears(config, grammar, Scripted("turn on the tv", rivals))
    utterance = Utterance(np.zeros(16_000, np.int16), 0, 1000)
    asyncio.run(ears.handle(utterance, pressed=pressed))
    return published


def test_a_rival_meaning_another_action_drops_the_sentence(
    config: Config, grammar: Grammar
) -> None:
    published = hear(config, grammar, ("switch on the tv", "turn off the tv"), pressed=False)
    assert not [e for e in published if isinstance(e, Intent | NotRecognized)]
    # Held, the wearer is told it was not understood, with what was heard.
    held = hear(config, grammar, ("turn off the tv",), pressed=True)
    assert not [e for e in held if isinstance(e, Intent)]
    assert [e.text for e in held if isinstance(e, NotRecognized)] == ["turn on the tv"]


def test_a_rival_meaning_the_same_action_is_no_contest(config: Config, grammar: Grammar) -> None:
    published = hear(config, grammar, ("switch on the tv",), pressed=False)
    assert [e.name for e in published if isinstance(e, Intent)] == ["HassTurnOn"]
