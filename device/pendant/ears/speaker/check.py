"""Only the wearer: utterances checked against the enrolled voices, and voices enrolled.

Runs in the ears' own process, not in the recogniser's child: the ears already hold
onnxruntime (Silero VAD), so the encoder adds only its weights (a 3-layer LSTM: about 9 MB of
RSS once the heap is trimmed after loading);
the recogniser's child is replaced whenever the grammar is rebuilt (two of them live during
a swap), and on a Zero 2 W (512 MB, the ears held to 170 MB) the encoder in it would be
loaded twice then. In a thread, an utterance is embedded while the child decodes it.

The encoder is loaded on first need (an enrolment, or a check with a voice enrolled): a
pendant nobody enrolled on pays nothing for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from pendant.core import heap
from pendant.core.config import Config, SpeakerConfig
from pendant.core.events import (
    ENROL_MIN_UTTERANCES,
    ENROL_UTTERANCES,
    VoiceProblem,
    Voices,
)
from pendant.ears.audio import RATE_HZ
from pendant.ears.speaker.store import (
    VoiceStore,
    VoiceStoreError,
    centroid,
    normalised,
    one_voice,
)

log = logging.getLogger(__name__)

ENROL_TIMEOUT_S = 120.0
"""An enrolment nobody speaks to for this long is dropped (the phone was put away)."""


class Encoder(Protocol):
    """What `pendant.ears.speaker.encoder.VoiceEncoder` does for the check."""

    def embed(self, samples: np.ndarray, rate: int = RATE_HZ) -> np.ndarray | None: ...


def load_encoder(config: Config) -> tuple[Encoder, float]:
    """The voice encoder from the model cache (`ge2e-voice`) and its calibrated threshold."""
    from pendant.core.model_cache import model_path
    from pendant.ears.speaker.encoder import DEFAULT_THRESHOLD, VoiceEncoder

    return VoiceEncoder.load(model_path(config, "ge2e-voice")), DEFAULT_THRESHOLD


class SpeakerCheck:
    """The enrolled voices, the check of an utterance against them, and an enrolment."""

    def __init__(
        self,
        config: SpeakerConfig,
        store: VoiceStore,
        loader: Callable[[], tuple[Encoder, float]],
    ) -> None:
        self.config = config
        """speaker: as configured (the service updates it when the config file changes)."""
        self.store = store
        self._loader = loader
        self._encoder: Encoder | None = None
        self._default_threshold = 0.0
        self.enrolling: str | None = None
        self._taken: list[np.ndarray] = []
        self._last_s = 0.0
        self._unreadable: str | None = None
        self._left_out = 0
        """Utterances the enrolment just kept left out, for the next event only."""

    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder, self._default_threshold = self._loader()
            # Loading reads the 17 MB .pt and builds the graph: 37 MB more RSS here until the
            # heap is trimmed, 9 MB after (x86, measured 2026-12-06); the Zero 2 W's ears
            # (MemoryMax 170M, about 130 MB in use) keep the 9, the peak is close to the cap.
            heap.trim()
            log.info("voice encoder loaded")
        return self._encoder

    @property
    def threshold(self) -> float:
        self.encoder()
        return self.config.threshold or self._default_threshold

    def voices(self) -> dict[str, np.ndarray] | None:
        """The enrolled voices; None (logged, one line naming the fix) when their file exists
        but cannot be read. Then the check stays in force and refuses everyone: a damaged
        file must not turn "only the wearer" into "anyone" (a bystander's "unlock the front
        door"). The phone hears so (`problem`: 'unreadable'); forgetting every voice ends it."""
        try:
            voices = {n: v.embedding for n, v in self.store.load().items()}
        except VoiceStoreError as exc:
            self._report(exc)
            return None
        self._unreadable = None
        return voices

    def _report(self, exc: VoiceStoreError) -> None:
        """Log why the voices cannot be read once, not at every utterance and answer."""
        if str(exc) != self._unreadable:
            log.error("%s", exc)
        self._unreadable = str(exc)

    def in_force(self) -> bool:
        return self.config.check != "off" and self.voices() != {}

    def must_check(self, pressed: bool) -> bool:
        """Whether this utterance is checked: held talk only with check 'always'."""
        if self.config.check == "off" or (pressed and self.config.check != "always"):
            return False
        return self.voices() != {}

    async def accepts(self, audio: np.ndarray) -> bool:
        """Whether `audio` is one of the enrolled voices' (too little speech to tell, or the
        voices unreadable: no)."""
        voices = self.voices()
        if voices is None:
            return False
        if not voices:
            return True
        try:
            encoder = await asyncio.to_thread(self.encoder)
            embedding = await asyncio.to_thread(encoder.embed, audio, RATE_HZ)
        except Exception:  # a wrong action is worse than none: whose voice unknown, no
            log.exception("voice: the encoder failed; the utterance is dropped")
            return False
        if embedding is None:
            log.info("voice: too little speech to tell whose")
            return False
        best = max(float(np.dot(normalised(embedding), v)) for v in voices.values())
        # The score stays here: never logged with a name, never published.
        return best >= self.threshold

    # --- enrolment ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        """The next utterances (conversation or held) are `name`'s, not commands."""
        self.enrolling, self._taken, self._last_s = name, [], time.monotonic()
        log.info("enrolling a voice: %d utterances", ENROL_UTTERANCES)

    def cancel(self) -> None:
        self.enrolling, self._taken = None, []

    def stale(self) -> bool:
        return self.enrolling is not None and time.monotonic() - self._last_s > ENROL_TIMEOUT_S

    async def take(self, audio: np.ndarray) -> VoiceProblem | None:
        """One enrolment utterance; the voice is kept after ENROL_UTTERANCES of them."""
        encoder = await asyncio.to_thread(self.encoder)
        embedding = await asyncio.to_thread(encoder.embed, audio, RATE_HZ)
        self._last_s = time.monotonic()
        if self.enrolling is None:  # cancelled meanwhile
            return None
        if embedding is None:
            return "too_little_speech"
        self._taken.append(embedding)
        if len(self._taken) >= ENROL_UTTERANCES:
            return self.finish()
        return None

    @property
    def heard(self) -> int:
        return len(self._taken)

    def finish(self) -> VoiceProblem | None:
        """Keep the voice from what was heard (at least ENROL_MIN_UTTERANCES)."""
        name, taken = self.enrolling, self._taken
        self.cancel()
        if name is None:
            return None
        if len(taken) < ENROL_MIN_UTTERANCES:
            return "too_little_speech"
        return self.keep(name, taken)

    def keep(self, name: str, embeddings: list[np.ndarray]) -> VoiceProblem | None:
        """Keep the voice of `embeddings` if they sound like one voice (`one_voice`: an odd one
        out may be left out); never a voiceprint of two people."""
        kept = one_voice(embeddings)
        if kept is None:
            log.info("voice not kept: its %d utterances are not one voice", len(embeddings))
            return "not_one_voice"
        voice = [embeddings[k] for k in kept]
        try:
            self.store.add(name, centroid(voice), len(voice))
        except VoiceStoreError as exc:
            log.error("voice not kept: %s", exc)
            return "too_many_voices" if "enrolled already" in str(exc) else "not_saved"
        log.info("voice enrolled from %d utterances of %d", len(voice), len(embeddings))
        self._left_out = len(embeddings) - len(voice)
        return None

    def forget(self, name: str | None) -> VoiceProblem | None:
        """Forget `name`, or every voice (None)."""
        try:
            if name is None:
                self.store.forget_all()
            elif self.store.forget(name) is None:
                return "unknown_voice"
        except VoiceStoreError as exc:
            log.error("%s", exc)
            return "unreadable"
        return None

    def event(self, device_id: str, problem: VoiceProblem | None = None) -> Voices:
        """What the phone sees: names, the mode, whether it is in force, the enrolment's
        progress, and how many utterances the enrolment just kept left out (said once).
        Never a voiceprint or a score."""
        left_out, self._left_out = self._left_out, 0
        try:
            names = self.store.names()
        except VoiceStoreError as exc:
            self._report(exc)
            names, problem = [], problem or "unreadable"
        return Voices(
            device_id=device_id,
            names=names,
            check=self.config.check,
            in_force=self.in_force(),
            enrolling=self.enrolling,
            heard=self.heard,
            problem=problem,
            left_out=left_out,
        )
