"""The ears: microphone to intents, on the bus. Touches raw audio, so has no network at all.

Conversation mode cuts the stream into utterances with the VAD and keeps only those that
match the home's closed set above `asr.min_confidence`; anything else is dropped without a
trace (no text published). An action on a guarded kind of device (`pendant.ears.confirm`) waits
for the wearer's tap. Holding the button records exactly from its press to its release, in
either mode, and says so when it did not understand.

With `escalate.enabled`, what the closed set rejects may be a question for a bigger model
instead (`_ask`): held talk; in conversation mode, an utterance within `FOLLOW_UP_S` of the
last question or of its answer (`outcome`), or one that starts with an "ask" phrase
(`escalate.ask_phrases`). Its words, written down by the open-vocabulary recogniser in the
recogniser's process, go out as an `Ask` on the bus, for the link alone to send on; the phone
then sees a `NotRecognized` without text (held talk) and, later, the link's `Answer` with the
question as sent.

With `[speaker]` in force (a voice enrolled), an utterance is checked against the enrolled
voices (`pendant.ears.speaker.check`) while it is recognised; one in no enrolled voice publishes
nothing at all (held talk is checked only with `speaker.check = "always"`, and then says
`not_your_voice`). While a voice is being enrolled, utterances are that voice's, not commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from pendant.core import wire
from pendant.core.asking import FOLLOW_UP_S, after_ask_phrase
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.core.events import (
    Activity,
    Ask,
    Button,
    Command,
    Event,
    HardwareMute,
    Intent,
    Mic,
    NotRecognized,
    Transcript,
)
from pendant.core.systemd import Heartbeat
from pendant.ears.asr import Transcription
from pendant.ears.asr.worker import RecognizerProcess
from pendant.ears.audio import RATE_HZ, AudioSource, Chunk, dbfs
from pendant.ears.confirm import needs_confirming
from pendant.ears.endpoint import sentence_is_over
from pendant.ears.speaker.check import SpeakerCheck
from pendant.ears.understand.grammar import Grammar
from pendant.ears.understand.nlu import IntentMatch, IntentParser
from pendant.ears.vad import Segmenter, SileroVad, Utterance

log = logging.getLogger(__name__)
T = TypeVar("T")

Publish = Callable[[Event], Awaitable[None]]
MUTED_BEAT_S = 1.0
# A guess stands if what followed it was no louder than this above the quiet it ended in.
GUESS_MARGIN_DB = 3.0
# Silence after which the guess is made (at most half the hangover): early enough that a
# sentence known to be over goes out well before the hangover would end it.
GUESS_AFTER_MS = 120
# A guess that stood for its utterance but scored under this share of `asr.min_confidence` is
# not heard again. Of 221 commands (speech-en, the espeak-ng set) 31 were heard again and one
# gained by it ("set a timer for 5 minutes", 0.35 -> 0.64 against a floor of 0.5); of 31 talk
# utterances all were heard again, of 326 in other languages 317, and the only one it changed
# became a false intent ("esquece" -> "skip", 0.03 -> 0.59). Half the floor lost a Kokoro
# tune voice's "turn off the ceiling fan" (0.12 -> 0.84); a fifth loses no command of the 552
# (either split) and keeps nearly all the saving: most such guesses score under 0.05.
HEAR_AGAIN_FROM = 0.2


@dataclass(slots=True)
class Heard:
    """What the recogniser made of some audio, and the intent the parser read in it (None: nothing
    heard, or no intent)."""

    transcription: Transcription | None
    match: IntentMatch | None
    contested: bool | None = None
    """Whether a rival means another action (`Ears._contested`); None until first asked: a
    guess and the utterance it stands for share one Heard."""


@dataclass(slots=True)
class Guess:
    """A recognition started early in the end-of-speech quiet, and what has to hold for it to
    stand for the whole utterance."""

    heard: asyncio.Task[Heard]
    audio: np.ndarray
    """The audio it is made on: the utterance so far, and the quiet it will end in."""
    samples: int
    """Length of the utterance's audio in `audio`."""
    quiet_dbfs: float
    """Level of the quiet it ended in; anything louder after it may be words the VAD missed."""
    over: bool | None = None
    """Once it is in: a confident command the closed set lets nothing change (decided once,
    not on every chunk of the quiet that follows)."""
    words: asyncio.Task[str | None] | None = None
    """Once it is in and no confident command: the open-vocabulary words of the same audio,
    started at once when the utterance may be a question (`Ears._words_early`)."""

    def cancel(self) -> None:
        """Gives up the guess's answers (the recogniser's process finishes what it began)."""
        self.heard.cancel()
        if self.words is not None:
            self.words.cancel()

    def stands_for(self, utterance: Utterance) -> bool:
        """Whether the guess may stand for `utterance`: nothing after the audio it was made on is
        more than GUESS_MARGIN_DB louder than the quiet it ended in."""
        rest = utterance.audio[self.samples :]
        return dbfs(rest) <= self.quiet_dbfs + GUESS_MARGIN_DB


@dataclass
class Understanding:
    """What turns words into intents; swapped as one when the config changes."""

    config: Config
    recognizer: RecognizerProcess
    parser: IntentParser
    grammar: Grammar
    """The closed set the recogniser searches."""


class Ears:
    """Audio in, intents out: utterances (conversation mode) and held talk are recognised, and
    intents, transcripts, status and activity published."""

    def __init__(
        self,
        understanding: Understanding,
        source: AudioSource,
        silero: SileroVad,
        publish: Publish,
        heartbeat: Heartbeat | None = None,
        on_mute: Callable[[bool], None] | None = None,
        speaker: SpeakerCheck | None = None,
    ) -> None:
        self._understanding = understanding
        self.speaker = speaker
        """Who spoke (`speaker.check`): None, no check."""
        self.source = source
        self.publish = publish
        self.heartbeat = heartbeat or Heartbeat()
        self.on_mute = on_mute
        self.muted = False
        """What is enforced: the wearer's choice, or the privacy switch."""
        self.wanted_muted = False
        """The wearer's choice (phone, Home Assistant, long hold), remembered across restarts."""
        self.hardware_muted = False
        self.area: str | None = None
        """The room Home Assistant says the wearer is in (cmd/area), for "in here"."""
        config = understanding.config
        self.segmenter = Segmenter(config.vad, silero, config.audio.chunk_ms)
        self._pressed: list[np.ndarray] | None = None
        self._press_end_ms = 0
        self._tapped = asyncio.Event()
        self._confirming: asyncio.Task[None] | None = None
        """An action heard that waits for the wearer's tap (see `_confirm`)."""
        self.utterances = 0
        self._asked_at = -float("inf")
        self._asked_session: str | None = None
        """When (monotonic) the ears last published an `Ask`, or the link answered it: the
        follow-up window's start."""
        # What is being heard in the end-of-speech quiet of the utterance in progress.
        self._early: Guess | None = None
        self._mutes = 0
        """How many times the mic was muted: what was heard before a mute is not published."""
        self._muted_at_ms = 0
        """When (Unix epoch ms) the mic was last muted."""

    @property
    def understanding(self) -> Understanding:
        """What turns words into intents (a config or grammar change swaps it)."""
        return self._understanding

    @understanding.setter
    def understanding(self, understanding: Understanding) -> None:
        self._understanding = understanding
        if understanding.config.listen.mode == "press_to_talk":
            # Nothing is heard without the button now: not the utterance in progress either,
            # whether a guess would end it or the audio after a change back.
            self.segmenter.reset()
            self._drop_guess()

    @property
    def config(self) -> Config:
        """The config of the understanding in use (a reload swaps it)."""
        return self.understanding.config

    async def run(self) -> None:
        """Until the source ends (a WAV source) or the task is cancelled (the microphone)."""
        await self.publish(self._status("muted" if self.muted else "ready"))
        await self._activity("idle" if self.muted else "capturing")
        beat = asyncio.create_task(self._beat_while_muted())
        chunks = aiter(self.source.chunks())
        try:
            while (chunk := await self._next_chunk(chunks)) is not None:
                self.heartbeat.beat()
                if not self.muted:
                    await self._on_chunk(chunk)
            for utterance in self.segmenter.flush():
                await self.handle(utterance, pressed=False)
        finally:
            beat.cancel()
            self._drop_guess()
            if self._confirming is not None:
                self._confirming.cancel()

    async def _next_chunk(self, chunks: AsyncIterator[Chunk]) -> Chunk | None:
        """The source's next chunk (None at its end). While a guess is being decoded, its
        answer is taken as soon as it comes rather than with the next block of audio, which a
        source hands over up to BLOCK_CHUNKS chunks (90 ms) later: a sentence that is over
        ends then. Only then does waiting cost a task per chunk."""
        early = self._early
        if early is None or early.heard.done():
            return await anext(chunks, None)
        following = asyncio.ensure_future(anext(chunks, None))
        mutes = self._mutes
        try:
            await asyncio.wait((following, early.heard), return_when=asyncio.FIRST_COMPLETED)
            if not following.done() and self._early is early and not self.muted:
                await self._end_early()
            chunk = await following
        finally:
            following.cancel()
        if chunk is not None and self._mutes != mutes and chunk.end_ms <= self._muted_at_ms:
            # Captured before a mute that came while the utterance went out: a microphone
            # drops what it holds when it closes, and so does this.
            return await anext(chunks, None)
        return chunk

    async def _end_early(self) -> None:
        """Ends the utterance in progress if the guess just in says it may end now."""
        if self.config.listen.mode == "press_to_talk" or self._pressed is not None:
            return
        if await self._recognise_early():
            for utterance in self.segmenter.flush():
                await self.handle(utterance, pressed=False)

    async def _beat_while_muted(self) -> None:
        # No audio flows while muted, by design; that is not a stall for the watchdog.
        while True:
            if self.muted:
                self.heartbeat.beat()
            await asyncio.sleep(MUTED_BEAT_S)

    async def on_command(self, event: Event) -> None:
        """Acts on a mic mute command, an area command, a buzz (the link's outcome of a
        question), or the hardware switch; any other event is ignored."""
        if isinstance(event, Command) and event.name == "mute" and event.mic is not None:
            await self.set_muted(event.mic)
        elif isinstance(event, Command) and event.name == "area":
            self.set_area(event.area)
        elif isinstance(event, Command) and event.name == "buzz":
            self.outcome(event.pattern, event.session_id)
        elif isinstance(event, HardwareMute):
            await self.set_hardware_muted(event.mic)

    def outcome(self, pattern: str | None, session_id: str | None) -> None:
        """The buzz the link sends when a question is answered (`understood`) or not: an answer
        restarts the follow-up window from now, as the link's does; no answer closes it (the
        link takes no follow-up then, so nothing more is written down). Only the outcome of
        the last question counts: a phone's buzz, or a late one for an earlier question, is
        about something else."""
        if session_id is None or session_id != self._asked_session:
            return
        now = time.monotonic()
        if now - self._asked_at > self.config.escalate.timeout_s + FOLLOW_UP_S:
            return
        self._asked_at = now if pattern == "understood" else -float("inf")

    def set_area(self, area: str | None) -> None:
        """The room the wearer is in (None: not known), for "in here"; logged when it changes."""
        if area != self.area:
            log.info("the wearer is in %s", area or "no known area")
        self.area = area

    @property
    def here(self) -> str | None:
        """The commanded area, as the config spells it, while the config still has it.

        The link checked it against its config; the ears' may have changed since.
        """
        if self.area is None:
            return None
        by_lower = {a.lower(): a for a in self.config.home.areas}
        return by_lower.get(self.area.lower())

    async def set_muted(self, muted: bool) -> None:
        """The wearer's wish; the privacy switch, when on, keeps the mic muted regardless."""
        self.wanted_muted = muted
        if self.on_mute is not None:
            self.on_mute(muted)
        if self.hardware_muted and not muted:
            log.warning("unmute refused: the privacy switch is on")
        await self._enforce(muted or self.hardware_muted)

    async def set_hardware_muted(self, muted: bool) -> None:
        """The privacy switch: on, the mic is muted whatever the wearer wants; off, the wearer's
        wish holds again. Returns once the mute is enforced and published; a report that
        changes nothing (the switch's retained state, read at start) publishes nothing, so
        the link does not fold a second, identical status."""
        if muted == self.hardware_muted and self.muted == (muted or self.wanted_muted):
            return
        self.hardware_muted = muted
        await self._enforce(muted or self.wanted_muted)

    async def _enforce(self, muted: bool) -> None:
        """Mute closes the microphone before the muted state is published: mute means nothing
        is captured."""
        if muted:
            self.source.pause()
            self._mutes += 1
            self._muted_at_ms = wire.now_ms()
            self.segmenter.reset()
            self._pressed = None
            self._drop_guess()
            if self._confirming is not None:
                self._confirming.cancel()  # muting says no to a waiting action too
            if self.speaker is not None and self.speaker.enrolling is not None:
                # Nor is what was heard before it kept: the wearer starts again once unmuted.
                self.speaker.cancel()
                await self.publish(self.speaker.event(self.config.device_id))
        else:
            self.source.resume()
        self.muted = muted
        log.info("microphone %s", "muted" if muted else "listening")
        await self.publish(self._status("muted" if muted else "ready"))
        await self._activity("idle" if muted else "capturing")

    async def _activity(self, state: str) -> None:
        # From the capture code itself: the LED cannot say idle while the mic is open.
        await self.publish(
            Activity(device_id=self.config.device_id, sensor="mic", state=state)  # type: ignore[arg-type]
        )

    async def _on_chunk(self, chunk: Chunk) -> None:
        if self._pressed is not None:
            self._pressed.append(chunk.samples)
            self._press_end_ms = chunk.end_ms
            return
        if self.config.listen.mode == "press_to_talk":
            return
        for utterance in self.segmenter.push(chunk):
            await self.handle(utterance, pressed=False)
        await self._end_early()

    async def _recognise_early(self) -> bool:
        """Recognise during the end-of-speech hangover instead of after it; True when the
        utterance may end now.

        `GUESS_AFTER_MS` into the quiet, speech has most likely ended: a recognition starts
        then, in the recogniser's process, while the audio goes on through the VAD here. If
        speech resumes the guess is dropped; if it ends, the guess stands for the utterance
        unless anything louder than the quiet followed (quiet words the VAD did not call
        speech). When the guess is a confident command that nothing the closed set lets
        follow would change (`sentence_is_over`), the utterance ends as soon as the guess is
        in, instead of after the hangover. Every other utterance waits the whole hangover,
        a confident command too: a speaker who pauses after "turn on the lights" may still
        say "in the kitchen" (`tools/measure_pauses.py`: ending such commands after 300 ms
        of quiet acted on the first part of 10 of 51 commands cut there by a pause of
        200 ms, and of 1 waiting the hangover).
        """
        seg = self.segmenter
        if not seg.in_speech or seg.silence_ms == 0:
            self._drop_guess()
            return False
        if self._early is None:
            if seg.silence_ms < min(GUESS_AFTER_MS, self.config.vad.hangover_ms // 2):
                return False
            self._early = self._guess()
            if self.source.realtime:
                return False
            # Audio faster than anyone speaks (a test, `pendant listen`): the quiet would be
            # over before any decode is, so the guess is waited for, as if decoding took no
            # time; results do not depend on this machine's speed.
            await asyncio.wait([self._early.heard])
        early = self._early
        task = early.heard
        if not task.done() or task.cancelled() or task.exception() is not None:
            return False
        if early.over is None:
            heard = task.result()
            confident = self._confident(heard)
            early.over = confident and sentence_is_over(
                heard.transcription.text,  # type: ignore[union-attr]
                heard.match,  # type: ignore[arg-type]
                self.understanding.grammar,
                self.understanding.parser,
                self.here,
            )
            if not confident and self._may_ask(pressed=False):
                early.words = self._words_early(early.audio)
        return early.over

    def _confident(self, heard: Heard) -> bool:
        """A command heard above conversation mode's floor."""
        said = heard.transcription
        return (
            said is not None
            and heard.match is not None
            and said.confidence >= self.config.asr.min_confidence
            and not self._contested(heard)
        )

    def _worth_hearing_again(self, guess: Heard) -> bool:
        """Whether the whole utterance may be heard again after a guess that stood for it but
        was not accepted: not when the guess scored under HEAR_AGAIN_FROM of the floor, or
        heard no sentence at all (a score of 0). The
        second hearing differs from the guess only in the quiet at its end, and talk and other
        languages, which are most of what conversation mode hears, score far below the floor:
        hearing them again doubled the recogniser's work on a talkative day for nothing."""
        said = guess.transcription
        floor = self.config.asr.min_confidence
        return said is not None and said.confidence >= HEAR_AGAIN_FROM * floor

    def _guess(self) -> Guess:
        seg = self.segmenter
        # The recogniser's confidence depends on the trailing silence it hears, so the guess
        # gets as much as the finished utterance will: the quietest frame of the quiet so far,
        # repeated. Not the whole quiet: it may still hold the tail of a word, and a word's tail
        # repeated is a new sound ("set a timer for five minutes" became "what is date").
        audio = seg.audio_so_far()
        missing = (self.config.vad.hangover_ms - seg.silence_ms) * RATE_HZ // 1000
        quiet = audio[-seg.silence_ms * RATE_HZ // 1000 :]
        frame = self.config.audio.chunk_ms * RATE_HZ // 1000
        frames = quiet[: len(quiet) // frame * frame].reshape(-1, frame)
        quietest = frames[np.argmin((frames.astype(np.float64) ** 2).mean(axis=1))]
        pad = np.resize(quietest, missing) if missing > 0 else quiet[:0]
        padded = np.concatenate((audio, pad))
        heard = asyncio.ensure_future(self._recognise(padded))
        return Guess(heard, padded, len(audio), dbfs(quiet))

    def _drop_guess(self) -> None:
        if self._early is not None:
            self._early.cancel()
            self._early = None

    def _words_early(self, audio: np.ndarray) -> asyncio.Task[str | None]:
        """The open-vocabulary words of `audio`, started now: the closed set's guess heard no
        confident command in it, so it may be a question (an "ask" phrase, or a follow-up).
        Whisper takes most of a question's wait, so it starts in the end-of-speech quiet
        rather than after the hangover and the closed set's second hearing; an utterance that
        starts with a phrase is then asked without that second hearing (`handle`). If speech
        resumes the words are given up, but the recogniser's process still spends the CPU:
        the price of escalate.ask_phrases in conversation mode."""
        return asyncio.ensure_future(self._on_recognizer(lambda r: r.transcribe_open(audio)))

    async def _recognise(self, audio: np.ndarray) -> Heard:
        heard = await self._on_recognizer(lambda r: r.transcribe(audio))
        parser = self.understanding.parser
        match = parser.parse(heard.text, here=self.here) if heard is not None else None
        return Heard(heard, match)

    def _contested(self, heard: Heard) -> bool:
        """Does a rival the recogniser heard nearly as well mean another action? A wrong
        action is worse than none: the wearer says it again."""
        said, match = heard.transcription, heard.match
        if heard.contested is None:
            heard.contested = (
                said is not None
                and match is not None
                and self.understanding.parser.contested(match, said.rivals, here=self.here)
                is not None
            )
        return heard.contested

    async def on_button(self, event: Button) -> None:
        """Held talk from the button: a press starts recording (what the VAD had in progress is
        dropped), a release recognises what was recorded, a cancel drops it; a tap confirms an
        action that waits for one."""
        if event.action == "tap":  # after the press's cancel: nothing held is left
            self._tapped.set()
            return
        if event.action == "press":
            self._pressed = []
            # What the VAD was in the middle of is part of the held talk now.
            self.segmenter.reset()
            self._drop_guess()
            return
        frames, self._pressed = self._pressed, None
        if event.action == "cancel":
            return
        if frames:
            audio = np.concatenate(frames)
            speech_ms = len(audio) * 1000 // RATE_HZ
            await self.handle(Utterance(audio, self._press_end_ms, speech_ms), pressed=True)

    async def handle(self, utterance: Utterance, *, pressed: bool) -> Intent | None:
        """Recognises `utterance` (or takes the early guess that stands for it) and publishes its
        intent if it is confident enough, returning it. None when nothing was understood, the mic
        was muted meanwhile, or the intent waits for a tap (sent later, if tapped). Held talk
        (`pressed`) not understood is published as NotRecognized."""
        self.utterances += 1
        mutes = self._mutes
        speaker = self.speaker
        if speaker is not None and speaker.enrolling is not None:
            self._drop_guess()
            await self._enrol(utterance)
            return None
        # Whose voice, in a thread while the recogniser decodes: nothing is published before.
        verdict = None
        if speaker is not None and speaker.must_check(pressed):
            verdict = asyncio.ensure_future(speaker.accepts(utterance.audio))
        try:
            return await self._handle(utterance, pressed=pressed, verdict=verdict, mutes=mutes)
        finally:
            if verdict is not None:
                verdict.cancel()

    def _muted_since(self, mutes: int) -> bool:
        """Whether the mic is muted, or was muted (and maybe unmuted) since `_mutes` was
        `mutes`: the wearer said no to what was heard before."""
        return self.muted or self._mutes != mutes

    async def _may_publish(
        self,
        utterance: Utterance,
        *,
        pressed: bool,
        verdict: asyncio.Future[bool] | None,
        mutes: int,
    ) -> bool:
        """Whether anything of `utterance` may leave the ears: not if the mic was muted since it
        was heard (`mutes`; the wearer said no to it), nor if it is not an enrolled voice.
        Every path that publishes from an utterance asks this first."""
        if self._muted_since(mutes):
            return False
        accepted = verdict is None or await verdict
        if self._muted_since(mutes):  # muted while the voice was being checked
            return False
        if not accepted:
            # Nothing about it leaves: no intent, no transcript, no question, no score.
            log.info("utterance of %d ms: not an enrolled voice", utterance.speech_ms)
            if pressed:
                await self.publish(
                    NotRecognized(device_id=self.config.device_id, reason="not_your_voice")
                )
            return False
        return True

    async def _enrol(self, utterance: Utterance) -> None:
        """An utterance of the voice being enrolled: never recognised, never acted on."""
        assert self.speaker is not None
        problem = await self.speaker.take(utterance.audio)
        await self.publish(self.speaker.event(self.config.device_id, problem))

    async def _handle(
        self,
        utterance: Utterance,
        *,
        pressed: bool,
        verdict: asyncio.Future[bool] | None,
        mutes: int,
    ) -> Intent | None:
        early, self._early = self._early, None
        result = None
        words: asyncio.Task[str | None] | None = None
        if early is not None and not pressed and early.stands_for(utterance):
            result = await early.heard  # most often in already: waiting beats starting again
            words = early.words
            if words is not None and self._phrased(await words):
                # Said as a question ("ask Home Assistant, ..."): no second hearing by the
                # closed set, whose decode would wait for Whisper's in the same process.
                if await self._may_publish(utterance, pressed=False, verdict=verdict, mutes=mutes):
                    score = result.transcription.confidence if result.transcription else 0.0
                    await self._ask(utterance, pressed=False, score=score, words=words, mutes=mutes)
                return None
            if not self._confident(result) and self._worth_hearing_again(result):
                # The guess heard less of the quiet at the end than the utterance has, and the
                # recogniser's scores depend on it: what the guess did not accept, the whole
                # utterance gets a second hearing of (a decode the old loop could not afford).
                result = None
        elif early is not None:
            early.cancel()
        if result is None:
            await self._activity("thinking")
            result = await self._recognise(utterance.audio)
            await self._activity("idle" if self.muted else "capturing")
        if not await self._may_publish(utterance, pressed=pressed, verdict=verdict, mutes=mutes):
            return None
        heard, match = result.transcription, result.match
        asr = self.config.asr
        floor = asr.min_confidence_pressed if pressed else asr.min_confidence
        score = heard.confidence_for(pressed) if heard is not None else 0.0
        confident = heard is not None and score >= floor and not self._contested(result)
        if heard is None or match is None or not confident:
            log.info("utterance of %d ms: no intent", utterance.speech_ms)
            if await self._ask(utterance, pressed=pressed, score=score, words=words, mutes=mutes):
                return None
            if pressed:
                await self.publish(
                    NotRecognized(
                        device_id=self.config.device_id,
                        text=heard.text if heard else None,
                        confidence=score,
                    )
                )
            return None
        intent = Intent(
            device_id=self.config.device_id,
            name=match.name,
            text=heard.text,
            confidence=round(score, 3),
            slots=match.slots,
            loudness_dbfs=round(dbfs(utterance.audio), 1),
            speech_end_ms=utterance.speech_end_ms,
        )
        if not pressed and needs_confirming(match, self.config):
            log.info("intent %s waits for a tap: %s", intent.name, intent.text)
            self.after_tap(lambda: self._send(intent), f"intent {intent.name}")
            return None
        await self._send(intent)
        return intent

    def _may_ask(self, *, pressed: bool) -> bool:
        """Whether what the closed set rejects now may be a question, so worth writing down."""
        escalate = self.config.escalate
        follow_up = time.monotonic() - self._asked_at <= FOLLOW_UP_S
        return escalate.enabled and (pressed or follow_up or bool(escalate.ask_phrases))

    def _phrased(self, words: str | None) -> bool:
        """Whether `words` start with an "ask" phrase and ask something after it."""
        return bool(words and after_ask_phrase(words, self.config.escalate.ask_phrases))

    async def _ask(
        self,
        utterance: Utterance,
        *,
        pressed: bool,
        score: float,
        words: Awaitable[str | None] | None = None,
        mutes: int,
    ) -> bool:
        """Publishes what the closed set rejected as an `Ask` when it is a question for the
        bigger model (see the module's docstring); True when it was, or when a mute meanwhile
        said no to it, so that nothing else is published about it. `words`: the utterance's
        words already asked for (`_words_early`), else they are written down here.

        The words stay in this process and the recogniser's: one that is no question (a
        bystander in conversation mode, no "ask" phrase) is neither published nor logged.
        """
        escalate = self.config.escalate
        if not self._may_ask(pressed=pressed):
            return False
        follow_up = time.monotonic() - self._asked_at <= FOLLOW_UP_S
        await self._activity("thinking")
        if words is None:
            words = self._on_recognizer(lambda r: r.transcribe_open(utterance.audio))
        said = await words
        await self._activity("idle" if self.muted else "capturing")
        if self._muted_since(mutes):
            return True
        if said is None:
            return False
        rest = after_ask_phrase(said, escalate.ask_phrases)
        if not (pressed or follow_up or rest):
            return False
        if rest == "":  # the phrase alone: nothing to ask
            return False
        # No room: the link sends its own (cmd/area), not the ears' word for it.
        ask = Ask(device_id=self.config.device_id, text=said)
        why = "held" if pressed else "follow-up" if follow_up else "phrase"
        log.info("question (%s, %d characters) for the link to ask", why, len(said))
        if pressed:
            # Without the closed set's guess, which would repeat the question wrongly: the
            # link's Answer carries it, under the same session id.
            await self.publish(
                NotRecognized(
                    device_id=self.config.device_id,
                    confidence=round(score, 3),
                    session_id=ask.session_id,
                )
            )
        await self.publish(ask)
        self._asked_at = time.monotonic()
        self._asked_session = ask.session_id
        return True

    async def _on_recognizer(self, ask: Callable[[RecognizerProcess], Awaitable[T]]) -> T:
        """`ask(recognizer)` on the current recogniser; again on the new one when a new grammar
        swapped it meanwhile and the old one, closed, failed."""
        recognizer = self.understanding.recognizer
        try:
            return await ask(recognizer)
        except PendantError:
            if self.understanding.recognizer is recognizer:
                raise
            return await ask(self.understanding.recognizer)

    async def _send(self, intent: Intent) -> None:
        log.info("intent %s (%.2f): %s", intent.name, intent.confidence, intent.text)
        await self.publish(
            Transcript(
                device_id=intent.device_id,
                text=intent.text,
                confidence=intent.confidence,
                session_id=intent.session_id,
            )
        )
        await self.publish(intent)

    @property
    def waiting(self) -> bool:
        """Whether something waits for the wearer's tap (`after_tap`)."""
        return self._confirming is not None

    def after_tap(
        self,
        then: Callable[[], Awaitable[object]],
        what: str,
        otherwise: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Run `then` if the wearer taps within `listen.confirm_s`, else `otherwise`; the LED
        and the motor ask for the tap. One thing waits at a time: the tap asked for is about
        the latest (an earlier one is dropped, as by a mute, and its `otherwise` runs). The
        audio loop goes on meanwhile."""
        if self._confirming is not None:
            self._confirming.cancel()
        waiting = asyncio.create_task(self._wait_for_tap(what))

        def ended(task: asyncio.Task[bool]) -> None:
            # Here, not in the wait: a wait cancelled before it began (a mute next in the
            # inbox) runs none of its body, and must still say no and stop looking waiting.
            # Once it has ended, a later wait or a mute cannot drop what the tap confirmed.
            if self._confirming is task:
                self._confirming = None
            tapped = not task.cancelled() and task.exception() is None and task.result()
            run = then if tapped else otherwise
            if run is not None:
                asyncio.ensure_future(run()).add_done_callback(_report_failure)

        waiting.add_done_callback(_report_failure)
        waiting.add_done_callback(ended)
        self._confirming = waiting

    async def _wait_for_tap(self, what: str) -> bool:
        """Whether the wearer tapped within `listen.confirm_s`, the LED asking meanwhile."""
        self._tapped.clear()
        try:
            await self._activity("confirm")
            async with asyncio.timeout(self.config.listen.confirm_s):
                await self._tapped.wait()
            return True
        except TimeoutError:
            log.info("%s dropped: no tap", what)
            return False
        finally:
            if self._confirming is asyncio.current_task():
                # Shielded: a cancelled wait must still take the LED out of "confirm".
                state = "idle" if self.muted else "capturing"
                settle = asyncio.ensure_future(self._activity(state))
                settle.add_done_callback(_report_failure)
                await asyncio.shield(settle)

    def _status(self, state: str) -> Mic:
        """The ears' part of the device's status (the link folds it into `Status`)."""
        return Mic(
            device_id=self.config.device_id,
            state=state,  # type: ignore[arg-type]
            muted=self.muted,
            asr_backend=self.config.asr.backend,
        )


def _report_failure(task: asyncio.Future[None]) -> None:
    """Log what a task nobody awaits ended with (a confirmed action the bus did not take):
    without it asyncio would only say "exception was never retrieved" when it is collected."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("waiting action: %s", exc)
