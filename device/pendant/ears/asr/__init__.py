"""Speech recognisers: one small module per backend, chosen by `asr.backend`.

A recogniser turns one utterance (16 kHz mono int16, in RAM) into the sentence of the home's
closed set it most likely was, with a confidence in [0, 1], or None when nothing fits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from pendant.core.backends import RECOGNIZERS

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import Config
    from pendant.ears.understand.grammar import Grammar


@dataclass(frozen=True, slots=True)
class Transcription:
    """What a recogniser heard: the sentence of the closed set it most likely was, and how sure it
    is."""

    text: str
    """A sentence of the closed set, lowercase words, e.g. 'turn on the kitchen lights'."""
    confidence: float
    """0..1; conversation mode drops anything under asr.min_confidence. It may count against
    a sentence what makes it likely a bystander's (a short one fits other speech by chance)."""
    held_confidence: float | None = None
    """0..1, for what is said holding the button (compared with asr.min_confidence_pressed):
    only a mishearing to rule out, since the speaker is the wearer; None: `confidence`."""
    rivals: tuple[str, ...] = ()
    """Sentences of the closed set one word away from `text` that the sounds fit nearly as
    well, closest first (`pendant.ears.asr.rivals`); a rival the NLU reads as another action
    makes the sentence too close to call."""

    def confidence_for(self, pressed: bool) -> float:
        """The confidence to compare with the floor of held talk or of conversation mode."""
        if pressed and self.held_confidence is not None:
            return self.held_confidence
        return self.confidence


class Recognizer(Protocol):
    """What every speech recogniser provides (`create_recognizer` builds the configured one)."""

    guessed: Mapping[str, str]
    """The grammar's words with no dictionary pronunciation, and what made one up
    (`pendant.ears.asr.pronounce.ESPEAK` or `LETTERS`); empty for a recogniser that reads no
    pronunciations."""

    def transcribe(self, audio: np.ndarray) -> Transcription | None:
        """The closed-set sentence `audio` (16 kHz mono int16) most likely was; None when nothing
        fits. Blocks while it decodes (the ears run it in a child process)."""
        ...

    def close(self) -> None:
        """Drops the model; the recogniser is not used after it."""
        ...


BACKENDS = RECOGNIZERS
"""Each recogniser by name, as `"module:Class"` (pendant.core.backends)."""


def create_recognizer(config: Config, grammar: Grammar) -> Recognizer:
    """The configured recogniser, its model loaded; BackendUnavailable names the missing extra."""
    return BACKENDS.load(config.asr.backend)(config, grammar)
