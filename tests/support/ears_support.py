"""The ears' listener on its own, for tests that hand it utterances themselves: no
microphone, a recogniser the test supplies, and what it publishes collected in a list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from pendant.core.config import Config
from pendant.core.events import Event
from pendant.core.model_cache import model_path
from pendant.ears.asr import Transcription
from pendant.ears.audio import RATE_HZ
from pendant.ears.listener import Ears, Understanding
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from pendant.ears.vad import SileroVad


class Closed:
    """No microphone: the test hands the ears an utterance itself."""

    realtime = True

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


def bare_ears(config: Config, grammar: Grammar, recognizer: Any) -> tuple[Ears, list[Event]]:
    """Ears hearing through `recognizer`, and the list their events are published to."""
    understanding = Understanding(config, recognizer, IntentParser(config), grammar)
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    silero = SileroVad(model_path(config, "silero-vad"))
    return Ears(understanding, Closed(), silero, publish), published  # type: ignore[arg-type]


def silent_wav(folder: Path, seconds: int) -> Path:
    """`seconds` of silence as a 16 kHz WAV in `folder`: a source that plays and hears nothing."""
    path = folder / "quiet.wav"
    soundfile.write(path, np.zeros(RATE_HZ * seconds, np.int16), RATE_HZ, subtype="PCM_16")
    return path


class Heard:
    """A recogniser that always heard one sentence, with full confidence."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        return Transcription(self.text, 1.0)

    def close(self) -> None:
        pass
