"""A mute while an utterance is being heard (its recognition, or the speaker's verdict) says no
to it, even if the mic is unmuted before the hearing ends: nothing of it is published."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config, SpeakerConfig
from pendant.core.events import Intent, Transcript
from pendant.ears.asr import Transcription
from pendant.ears.audio import RATE_HZ
from pendant.ears.speaker.check import SpeakerCheck
from pendant.ears.speaker.store import VoiceStore
from pendant.ears.understand.grammar import Grammar
from pendant.ears.vad import Utterance
from tests.support.ears_support import Heard, bare_ears
from tests.unit.ears.test_speaker_every_path import SlowWearer, direction


class Slow:
    """Hears "timer status", sure of it, after a while."""

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        await asyncio.sleep(0.2)
        return Transcription("timer status", 1.0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("unmuted", [False, True])
@pytest.mark.parametrize("waiting_for", ["recognition", "verdict"])
def test_a_mute_while_heard_publishes_nothing(
    config: Config, grammar: Grammar, tmp_path: Path, waiting_for: str, unmuted: bool
) -> None:
    hearing = config.model_copy(
        update={"listen": config.listen.model_copy(update={"confirm_kinds": []})}
    )
    recognizer = Slow() if waiting_for == "recognition" else Heard("timer status")
    ears, published = bare_ears(hearing, grammar, recognizer)
    if waiting_for == "verdict":
        store = VoiceStore(tmp_path / "voices.json")
        store.add("Sam", direction(0), 5)
        ears.speaker = SpeakerCheck(SpeakerConfig(), store, lambda: (SlowWearer(), 0.5))

    async def scenario() -> None:
        said = Utterance(np.zeros(RATE_HZ, np.int16), 0, 1000)
        handling = asyncio.create_task(ears.handle(said, pressed=False))
        await asyncio.sleep(0.05)
        await ears.set_muted(True)
        if unmuted:
            await ears.set_muted(False)
        await handling

    asyncio.run(scenario())
    assert not [e for e in published if isinstance(e, Intent | Transcript)]
