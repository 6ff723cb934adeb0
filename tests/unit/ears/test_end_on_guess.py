"""A sentence that is over ends when the guess made in its end-of-speech quiet comes in, not
when the next block of audio does (`Ears._next_chunk`): a source hands audio over in blocks of
up to 90 ms, and an answer waiting for the next one is that much later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.events import Event, Intent
from pendant.ears.asr import Transcription
from pendant.ears.audio import Chunk
from pendant.ears.audio.wav import WavSource
from pendant.ears.endpoint import sentence_is_over
from pendant.ears.listener import GUESS_AFTER_MS
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from tests.conftest import SPEECH
from tests.support.ears_support import bare_ears

RECORDING = SPEECH / "main" / "timer status.wav"
# Long enough for any machine to answer a guess; the test fails by reaching it.
PATIENCE_S = 60
# "timer status" is longer than this.
WORDS_MS = 400


class Heard:
    """Hears "timer status", sure of it, counting."""

    def __init__(self) -> None:
        self.hearings = 0

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        self.hearings += 1
        return Transcription("timer status", 0.99)

    def close(self) -> None:
        pass


class Stalling:
    """Live audio (`realtime`) from the recording that stops coming once the ears have heard
    `GUESS_AFTER_MS` of quiet after the speech, as a microphone between two blocks would,
    until the test lets it go on."""

    realtime = True
    started_ms = None

    def __init__(self, inner: WavSource, quiet_ms: Callable[[], int]) -> None:
        self.inner, self.quiet_ms = inner, quiet_ms
        self.go_on = asyncio.Event()
        self.stalled = False

    async def chunks(self) -> AsyncIterator[Chunk]:
        async for chunk in self.inner.chunks():
            yield chunk
            if self.quiet_ms() >= GUESS_AFTER_MS:
                break
        self.stalled = True
        await self.go_on.wait()

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None:
        self.inner.close()


def test_an_over_sentence_goes_out_before_more_audio_comes(
    config: Config, grammar: Grammar
) -> None:
    if not RECORDING.exists():
        pytest.skip(f"no shared recordings at {SPEECH}")
    said = IntentParser(config).parse("timer status")
    assert said is not None
    assert sentence_is_over("timer status", said, grammar, IntentParser(config))
    unpaced = config.model_copy(
        update={"audio": config.audio.model_copy(update={"realtime": False})}
    )
    recognizer = Heard()
    ears, published = bare_ears(config, grammar, recognizer)
    seg = ears.segmenter
    # The quiet after the words, not a pause before them (a breath, a click).
    source = Stalling(
        WavSource(unpaced.audio, [RECORDING]),
        lambda: seg.silence_ms if seg.speech_ms >= WORDS_MS else 0,
    )
    ears.source = source  # type: ignore[assignment]
    out_while_stalled: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)
        if isinstance(event, Intent):
            if source.stalled:
                out_while_stalled.append(event)
            source.go_on.set()

    ears.publish = publish

    async def play() -> None:
        listening = asyncio.create_task(ears.run())
        await asyncio.wait_for(source.go_on.wait(), PATIENCE_S)
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)

    asyncio.run(play())
    assert [e.name for e in out_while_stalled] == ["HassTimerStatus"]
