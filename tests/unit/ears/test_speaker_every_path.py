"""Every path out of the ears waits for the speaker's verdict: a bystander's phrased question
("Ask Home Assistant, ...") in conversation mode does not leave while a voice is enrolled, on
the early-words path (a question heard in the end-of-speech quiet) as on the others."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config, EscalateConfig, SpeakerConfig
from pendant.core.events import Ask
from pendant.ears.audio.wav import WavSource
from pendant.ears.speaker.check import SpeakerCheck
from pendant.ears.speaker.store import EMBEDDING_SIZE, VoiceStore
from pendant.ears.understand.grammar import Grammar
from tests.conftest import SPEECH
from tests.support.ears_support import bare_ears
from tests.unit.ears.test_listener_ask import Counting


def direction(i: int) -> np.ndarray:
    v = np.zeros(EMBEDDING_SIZE, np.float32)
    v[i] = 1.0
    return v


class Bystander:
    """Every utterance is someone else's voice."""

    def embed(self, samples: np.ndarray, rate: int = 16000) -> np.ndarray | None:
        return direction(1)


class Wearer:
    """Every utterance is the enrolled wearer's."""

    def embed(self, samples: np.ndarray, rate: int = 16000) -> np.ndarray | None:
        return direction(0)


@pytest.mark.parametrize(("voice", "asked"), [(Bystander, False), (Wearer, True)])
def test_a_phrased_question_is_asked_for_the_wearer_alone(
    config: Config, grammar: Grammar, tmp_path: Path, voice: type, asked: bool
) -> None:
    recording = SPEECH / "main" / "cancel all timers.wav"
    if not recording.exists():
        pytest.skip(f"no shared recordings at {SPEECH}")
    escalate = EscalateConfig(enabled=True, url="http://homeassistant.local:8123")
    audio = config.audio.model_copy(update={"realtime": False})
    config = config.model_copy(update={"escalate": escalate, "audio": audio})
    store = VoiceStore(tmp_path / "ears")
    store.add("Sam", direction(0), 5)  # the wearer
    ears, published = bare_ears(
        config, grammar, Counting("Ask Home Assistant, unlock the front door")
    )
    ears.speaker = SpeakerCheck(SpeakerConfig(check="conversation"), store, lambda: (voice(), 0.7))
    ears.source = WavSource(config.audio, [recording])
    asyncio.run(ears.run())
    said = "Ask Home Assistant, unlock the front door"
    assert [e.text for e in published if isinstance(e, Ask)] == ([said] if asked else [])


class SlowWearer:
    """Every utterance is the wearer's, said after a while: the mute comes meanwhile."""

    def embed(self, samples: np.ndarray, rate: int = 16000) -> np.ndarray | None:
        time.sleep(0.2)  # in the verdict's thread
        return direction(0)
