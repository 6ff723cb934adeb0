"""A sentence that is over ends when the guess made in its end-of-speech quiet comes in, not
when the next block of audio does (`Ears._next_chunk`): a source hands audio over in blocks of
up to 90 ms, and an answer waiting for the next one is that much later."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import TypeVar

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.events import Event, Intent, Transcript
from pendant.ears.asr import Transcription
from pendant.ears.audio import Chunk
from pendant.ears.audio.wav import WavSource
from pendant.ears.endpoint import sentence_is_over
from pendant.ears.listener import GUESS_AFTER_MS, Ears
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentParser
from pendant.ears.vad import Utterance
from tests.conftest import SPEECH
from tests.support.ears_support import bare_ears

RECORDING = SPEECH / "main" / "timer status.wav"
# Long enough for any machine to answer a guess; the test fails by reaching it.
PATIENCE_S = 60
S = TypeVar("S", "Stalling", "Fetching")
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


def listening(
    config: Config, grammar: Grammar, recognizer: object, kind: type[S]
) -> tuple[Ears, list[Event], S]:
    """Ears hearing the recording live through `recognizer`, from a source of `kind` that
    stops short once the quiet after the words (not a pause before them: a breath, a click)
    reaches the guess."""
    if not RECORDING.exists():
        pytest.skip(f"no shared recordings at {SPEECH}")
    unpaced = config.model_copy(
        update={"audio": config.audio.model_copy(update={"realtime": False})}
    )
    ears, published = bare_ears(config, grammar, recognizer)
    seg = ears.segmenter
    source = kind(
        WavSource(unpaced.audio, [RECORDING]),
        lambda: seg.silence_ms if seg.speech_ms >= WORDS_MS else 0,
    )
    ears.source = source  # type: ignore[assignment]
    return ears, published, source


def test_an_over_sentence_goes_out_before_more_audio_comes(
    config: Config, grammar: Grammar
) -> None:
    said = IntentParser(config).parse("timer status")
    assert said is not None
    assert sentence_is_over("timer status", said, grammar, IntentParser(config))
    ears, published, source = listening(config, grammar, Heard(), Stalling)
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


class Fetching:
    """Live audio from the recording; once the quiet after the words reaches the guess, one
    more chunk is being captured (50 ms), then nothing until the test lets the stream end.
    Like a microphone, a pause drops what was captured before it and not yet delivered."""

    realtime = True
    started_ms = None
    LAST = -1
    """The last chunk's stamp."""

    def __init__(self, inner: WavSource, quiet_ms: Callable[[], int]) -> None:
        self.inner, self.quiet_ms = inner, quiet_ms
        self.end = asyncio.Event()
        self.paused_at: float | None = None

    async def chunks(self) -> AsyncIterator[Chunk]:
        loop = asyncio.get_running_loop()
        async for chunk in self.inner.chunks():
            yield chunk
            if self.quiet_ms() >= GUESS_AFTER_MS:
                break
        captured = loop.time() + 0.05
        await asyncio.sleep(0.05)
        if self.paused_at is None or self.paused_at < captured:
            yield Chunk(np.zeros(len(chunk.samples), np.int16), self.LAST)
        await self.end.wait()

    def pause(self) -> None:
        self.paused_at = asyncio.get_running_loop().time()

    def resume(self) -> None: ...

    def close(self) -> None:
        self.inner.close()


def test_audio_captured_before_a_mute_is_not_heard_after_it(
    config: Config, grammar: Grammar
) -> None:
    """The guess comes in while the next chunk is being fetched; the intent goes out, and the
    wearer mutes and unmutes meanwhile: that chunk, captured before the mute, is dropped as
    the microphone drops what it holds when it closes. Mute means nothing is captured."""
    ears, published, source = listening(config, grammar, Heard(), Fetching)
    seg = ears.segmenter
    heard_after_unmute: list[int] = []
    unmuted = False
    push = seg.push

    def pushed(chunk: Chunk) -> Iterator[Utterance]:
        if unmuted:
            heard_after_unmute.append(chunk.end_ms)
        return push(chunk)

    seg.push = pushed  # type: ignore[method-assign]

    async def publish(event: Event) -> None:
        nonlocal unmuted
        published.append(event)
        if isinstance(event, Transcript):
            await asyncio.sleep(0.1)  # the intent is slow to go out; the chunk comes meanwhile
            await ears.set_muted(True)
            await ears.set_muted(False)
            unmuted = True
        if isinstance(event, Intent):
            asyncio.get_running_loop().call_later(0.2, source.end.set)

    ears.publish = publish
    asyncio.run(asyncio.wait_for(ears.run(), PATIENCE_S))
    assert [e.name for e in published if isinstance(e, Intent)] == ["HassTimerStatus"]
    assert Fetching.LAST not in heard_after_unmute


class Held:
    """Hears "timer status", sure of it, once the test lets it answer."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        await self.answer.wait()
        return Transcription("timer status", 0.99)

    def close(self) -> None:
        pass


def test_press_to_talk_ends_nothing_on_a_guess(config: Config, grammar: Grammar) -> None:
    """A guess still out when the config turns to press-to-talk publishes nothing, nor does
    the utterance it was made on once conversation mode is back."""
    recognizer = Held()
    ears, published, source = listening(config, grammar, recognizer, Stalling)
    listen = config.listen.model_copy(update={"mode": "press_to_talk"})
    held = config.model_copy(update={"listen": listen})

    async def play() -> None:
        listening = asyncio.create_task(ears.run())
        async with asyncio.timeout(PATIENCE_S):
            while not source.stalled:
                await asyncio.sleep(0.01)
        conversation = ears.understanding
        ears.understanding = replace(conversation, config=held)
        recognizer.answer.set()
        await asyncio.sleep(0.3)
        # Back to conversation mode, the stream ends: nothing said before the change is left
        # to be heard (the end of a stream hears out what is in progress).
        ears.understanding = conversation
        source.go_on.set()
        await asyncio.wait_for(listening, PATIENCE_S)

    asyncio.run(play())
    assert [e for e in published if isinstance(e, Intent)] == []
