"""Open-vocabulary transcription: the words of a question the closed set has no sentence for,
written down on the device for an `Ask` (`[escalate]`).

Whisper base (`pendant.ears.asr.whisper_backend.Whisper`) without the snap to the closed set,
its encoder reading 15 s rather than 30 (`QUESTION_WINDOW_S`: half the time).
It runs in the recogniser's child process, beside the closed-set recogniser (sharing its model
when that is Whisper too), only when `escalate.enabled`: elsewhere the model is never loaded.

    >>> words = OpenTranscriber(config)        # doctest: +SKIP
    >>> words.transcribe(audio_int16_16k)      # doctest: +SKIP
    'What is a good substitute for eggs?'
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from pendant.ears.asr.whisper_backend import NO_SPEECH_PROB, QUESTION_WINDOW_S, Whisper

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import Config

MAX_CHARS = 300
"""An `Ask` holds at most this much text."""

MAX_NEW_TOKENS = 96
"""A question runs longer than a command (about 4 characters a token: `MAX_CHARS` and some);
the cap also bounds a hallucination loop on noise."""

_READABLE = frozenset("LMNPS")
"""Unicode categories (first letter) kept: what a person reads, as the link requires of a
question (`pendant.link.ask.readable`)."""


class OpenTranscriber:
    """What was said, as Whisper writes it (case and punctuation kept, for the model that
    reads it), or None for silence and noise.

    No prompt: the closed-set recogniser primes Whisper with the home's names, which helps
    it spell them but pulls free speech towards them; and a prompt holding the "ask" phrases
    could make Whisper write one that was never said, in conversation mode.
    """

    def __init__(self, config: Config, whisper: Whisper | None = None) -> None:
        self._owned = whisper is None
        self.whisper: Whisper | None = whisper or Whisper(config)

    def transcribe(self, audio: np.ndarray) -> str | None:
        """The words in `audio` (int16, 16 kHz, mono), at most `MAX_CHARS`; None for none."""
        if self.whisper is None:
            raise RuntimeError("OpenTranscriber is closed")
        if audio.ndim == 1 and audio.size == 0:
            return None
        text, _, no_speech = self.whisper.decode(
            audio, max_new_tokens=MAX_NEW_TOKENS, window_s=QUESTION_WINDOW_S
        )
        # Whisper's own rule wants a low log-probability too, but in the shorter window Whisper
        # is sure of its "you" on silence (no speech 0.93, log-probability -0.63); on speech
        # no_speech stayed at 0.43 or below (speech-en and bench_escalate's questions, 253).
        if no_speech > NO_SPEECH_PROB:
            return None
        return readable(text)[:MAX_CHARS].strip() or None

    def close(self) -> None:
        """Drops the model, unless it is the closed-set recogniser's."""
        if self._owned and self.whisper is not None:
            self.whisper.close()
        self.whisper = None


def readable(text: str) -> str:
    """`text` as the phone will show it: NFC, words one space apart, and only characters a
    reader sees (a control or an odd space becomes a space)."""
    text = unicodedata.normalize("NFC", text)
    kept = "".join(c if unicodedata.category(c)[0] in _READABLE else " " for c in text)
    return " ".join(kept.split())
