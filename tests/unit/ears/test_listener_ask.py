"""Which utterances the ears turn into questions for a bigger model (`Ears._ask`), with a
scripted recogniser: what the closed set rejected, held or followed up or opened with an "ask"
phrase, goes out as an `Ask`; nothing else does, and nothing at all with escalate off.
(tests/speech/test_ask_ears.py does the same with the real models on a real bus.)"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from pendant.core.asking import FOLLOW_UP_S
from pendant.core.config import Config, EscalateConfig
from pendant.core.events import Ask, Command, Event, NotRecognized
from pendant.ears import listener
from pendant.ears.asr import Transcription
from pendant.ears.asr.open_vocab import readable
from pendant.ears.audio.wav import WavSource
from pendant.ears.understand.grammar import Grammar
from pendant.ears.vad import Utterance
from tests.conftest import SPEECH
from tests.support.ears_support import bare_ears

QUESTION = "What is a good substitute for eggs?"


class Rejecting:
    """A recogniser whose closed set heard nothing sure, and whose open vocabulary heard
    `words` (None: nothing)."""

    def __init__(self, words: str | None) -> None:
        self.words = words
        self.opened = 0

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        return Transcription("what is the date", 0.05)

    async def transcribe_open(self, audio: np.ndarray) -> str | None:
        self.opened += 1
        return self.words

    def close(self) -> None:
        pass


def escalating(config: Config, **kw: object) -> Config:
    fields = {"enabled": True, "url": "http://homeassistant.local:8123"}
    return config.model_copy(update={"escalate": EscalateConfig(**(fields | kw))})


def hear(config: Config, grammar: Grammar, words: str | None, *said: bool) -> list[Event]:
    """The events published for utterances said held (True) or not (False), in turn."""
    ears, published = bare_ears(config, grammar, Rejecting(words))

    async def scenario() -> None:
        for pressed in said:
            audio = np.full(16_000, 500, np.int16)
            await ears.handle(Utterance(audio, 0, 1000), pressed=pressed)

    asyncio.run(scenario())
    return [e for e in published if isinstance(e, Ask | NotRecognized)]


def test_held_talk_the_closed_set_rejects_is_asked_without_a_text_duplicate(
    config: Config, grammar: Grammar
) -> None:
    events = hear(escalating(config), grammar, QUESTION, True)
    assert [type(e) for e in events] == [NotRecognized, Ask]
    rejected, ask = events
    assert isinstance(ask, Ask) and isinstance(rejected, NotRecognized)
    assert ask.text == QUESTION
    assert rejected.text is None  # the question goes once, in the Ask (and the Answer)
    assert rejected.session_id == ask.session_id


def test_conversation_mode_asks_only_after_a_phrase_or_in_the_follow_up(
    config: Config, grammar: Grammar, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = escalating(config)
    assert hear(config, grammar, QUESTION, False) == []  # a bystander, say
    asked = hear(config, grammar, f"Ask Home Assistant, {QUESTION}", False)
    assert [(type(e), e.text) for e in asked] == [(Ask, f"Ask Home Assistant, {QUESTION}")]
    assert hear(config, grammar, "Ask Home Assistant.", False) == []  # nothing to ask
    # Held, then unheld within the follow-up window: both asked.
    assert [type(e) for e in hear(config, grammar, QUESTION, True, False)] == [
        NotRecognized,
        Ask,
        Ask,
    ]
    # Unheld after the window: not asked.
    now = [1000.0]
    monkeypatch.setattr(listener.time, "monotonic", lambda: now[0])
    ears, published = bare_ears(config, grammar, Rejecting(QUESTION))

    async def scenario() -> None:
        audio = np.full(16_000, 500, np.int16)
        await ears.handle(Utterance(audio, 0, 1000), pressed=True)
        now[0] += FOLLOW_UP_S + 0.5
        await ears.handle(Utterance(audio, 0, 1000), pressed=False)

    asyncio.run(scenario())
    assert [type(e) for e in published if isinstance(e, Ask)] == [Ask]


def buzz(config: Config, pattern: str, session_id: str | None) -> Command:
    """The link's outcome buzz for the question `session_id` (None: a phone's buzz)."""
    return Command(device_id=config.device_id, name="buzz", pattern=pattern, session_id=session_id)


def talk(ears: Any) -> Callable[..., Awaitable[None]]:
    """An utterance to `ears`, held or not."""

    async def say(pressed: bool = False) -> None:
        await ears.handle(Utterance(np.full(16_000, 500, np.int16), 0, 1000), pressed=pressed)

    return say


def test_the_follow_up_window_runs_from_the_answer_and_closes_without_one(
    config: Config, grammar: Grammar, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(listener.time, "monotonic", lambda: now[0])
    recognizer = Rejecting(QUESTION)
    # No phrases: what is written down is only what may be a question by the window alone.
    ears, published = bare_ears(escalating(config, ask_phrases=[]), grammar, recognizer)

    say = talk(ears)

    def outcome(pattern: str) -> Command:
        """The link's buzz for the last question asked."""
        return buzz(config, pattern, [e for e in published if isinstance(e, Ask)][-1].session_id)

    async def scenario() -> None:
        await say(pressed=True)  # a question
        now[0] += 6  # a slow answer
        await ears.on_command(outcome("understood"))
        now[0] += FOLLOW_UP_S - 1  # 15 s after the question, 9 s after its answer
        await say()  # a follow-up
        now[0] += 2
        # The follow-up got no answer: the window closes.
        await ears.on_command(outcome("not_understood"))
        now[0] += 1
        await say()

    asyncio.run(scenario())
    assert len([e for e in published if isinstance(e, Ask)]) == 2
    assert recognizer.opened == 2  # the last utterance was not even written down


def test_only_the_last_questions_own_outcome_moves_the_follow_up_window(
    config: Config, grammar: Grammar, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(listener.time, "monotonic", lambda: now[0])
    recognizer = Rejecting(QUESTION)
    ears, published = bare_ears(escalating(config, ask_phrases=[]), grammar, recognizer)

    say = talk(ears)

    async def scenario() -> None:
        await say(pressed=True)
        first = [e for e in published if isinstance(e, Ask)][-1].session_id
        await say(pressed=True)
        now[0] += FOLLOW_UP_S + 1  # both questions' windows are over
        await ears.on_command(buzz(config, "understood", None))  # a phone's buzz
        # A late answer to the first question:
        await ears.on_command(buzz(config, "understood", first))
        await say()  # not a follow-up of anything: not written down

    asyncio.run(scenario())
    assert len([e for e in published if isinstance(e, Ask)]) == 2
    assert recognizer.opened == 2


def test_nothing_is_written_down_with_escalate_off(config: Config, grammar: Grammar) -> None:
    recognizer = Rejecting(f"ask home assistant {QUESTION}")
    ears, published = bare_ears(config, grammar, recognizer)

    async def scenario() -> None:
        for pressed in (True, False):
            await ears.handle(Utterance(np.full(16_000, 500, np.int16), 0, 1000), pressed=pressed)

    asyncio.run(scenario())
    assert recognizer.opened == 0
    assert not any(isinstance(e, Ask) for e in published)
    rejected = [e for e in published if isinstance(e, NotRecognized)]
    assert [e.text for e in rejected] == ["what is the date"]  # as before: held talk only


def test_without_phrases_conversation_mode_writes_nothing_down(
    config: Config, grammar: Grammar
) -> None:
    recognizer = Rejecting(f"ask home assistant {QUESTION}")
    ears, published = bare_ears(escalating(config, ask_phrases=[]), grammar, recognizer)
    asyncio.run(ears.handle(Utterance(np.full(16_000, 500, np.int16), 0, 1000), pressed=False))
    assert recognizer.opened == 0
    assert not any(isinstance(e, Ask) for e in published)


def test_held_talk_with_no_words_is_not_recognised_as_before(
    config: Config, grammar: Grammar
) -> None:
    events = hear(escalating(config), grammar, None, True)
    assert [(type(e), e.text) for e in events] == [(NotRecognized, "what is the date")]


def test_the_words_are_what_the_phone_will_show() -> None:
    assert readable("  What  is\u200b this?\n") == "What is this?"
    assert readable("Cafe\u0301 au lait") == "Caf\u00e9 au lait"  # NFC


class Counting(Rejecting):
    """`Rejecting`, counting the closed set's hearings too."""

    def __init__(self, words: str | None) -> None:
        super().__init__(words)
        self.closed = 0

    async def transcribe(self, audio: np.ndarray) -> Transcription:
        self.closed += 1
        return await super().transcribe(audio)


def spoken_in_conversation(config: Config, grammar: Grammar, words: str) -> tuple[Counting, list]:
    """A recorded command played through the ears in conversation mode (faster than real time:
    the guess in the end-of-speech quiet is waited for), the open vocabulary hearing `words`."""
    recording = SPEECH / "main" / "cancel all timers.wav"
    if not recording.exists():
        pytest.skip(f"no shared recordings at {SPEECH}")
    recognizer = Counting(words)
    audio = config.audio.model_copy(update={"realtime": False})
    config = escalating(config).model_copy(update={"audio": audio})
    ears, published = bare_ears(config, grammar, recognizer)
    ears.source = WavSource(config.audio, [recording])
    asyncio.run(ears.run())
    return recognizer, [e for e in published if isinstance(e, Ask)]


def test_a_phrased_question_is_written_down_in_the_quiet_without_a_second_hearing(
    config: Config, grammar: Grammar
) -> None:
    """The closed set's guess in the end-of-speech quiet was no command: Whisper starts at
    once, and a question with the phrase is asked without the closed set hearing it again."""
    recognizer, asked = spoken_in_conversation(config, grammar, f"Ask Home Assistant, {QUESTION}")
    assert [a.text for a in asked] == [f"Ask Home Assistant, {QUESTION}"]
    assert (recognizer.closed, recognizer.opened) == (1, 1)


def test_words_without_the_phrase_are_not_asked_and_not_written_twice(
    config: Config, grammar: Grammar
) -> None:
    recognizer, asked = spoken_in_conversation(config, grammar, QUESTION)
    assert asked == []  # no phrase, no follow-up: a bystander
    # The guess scored far below the floor: no second hearing (test_second_hearing.py).
    assert (recognizer.closed, recognizer.opened) == (1, 1)
