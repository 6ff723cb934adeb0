"""The ears as a service: audio in, events out on the bus, buttons and commands in.

`pendant service ears` runs it alone (`pendant.app.services`, through `component`);
`pendant run` beside the others (`pendant.app.one_process`). Only the ears' process imports
this module, so the other services do not load the speech stack (onnxruntime, pocketsphinx,
numpy): the body would need twice its memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt

from pendant.core import bus
from pendant.core import state as durable
from pendant.core import systemd as notify
from pendant.core.config import Config, CustomSentences, load_config
from pendant.core.errors import PendantError
from pendant.core.events import (
    PUBLIC_NAMES,
    Button,
    Command,
    Event,
    Sentences,
    SentenceSet,
    SentenceWarning,
    VoiceProblem,
)
from pendant.core.model_cache import model_path
from pendant.core.state import MuteMemory
from pendant.core.supervise import Ready, unobserved
from pendant.ears.asr.worker import RecognizerProcess
from pendant.ears.audio import AudioSource, create_source
from pendant.ears.listener import Ears, Understanding
from pendant.ears.sentence_check import fitted, sentence_warnings_async
from pendant.ears.speaker.check import ENROL_TIMEOUT_S, SpeakerCheck, load_encoder
from pendant.ears.speaker.store import VoiceStore
from pendant.ears.understand.grammar import check_sentences
from pendant.ears.understand.grammar_build import compile_grammar, compile_grammar_async
from pendant.ears.understand.nlu import IntentParser
from pendant.ears.vad import SileroVad

log = logging.getLogger(__name__)
# Phone voice commands that would let other voices in while the check is in force.
TAPPED_VOICE_ACTIONS = frozenset({"enrol", "forget", "forget_all"})

CONFIG_POLL_S = 2.0


def grammar_cache() -> Path:
    """systemd's CacheDirectory= for the unit, else the user's cache."""
    directory = os.environ.get("CACHE_DIRECTORY")
    return Path(directory) if directory else Path.home() / ".cache" / "pendant" / "grammar"


def understand(config: Config) -> Understanding:
    """At start-up: the grammar compiled and the recogniser loaded, each in a child process,
    while nothing else runs."""
    check_sentences(config)
    grammar = compile_grammar(config, grammar_cache())
    recognizer = RecognizerProcess(config, grammar)
    recognizer.wait_ready()
    return Understanding(config, recognizer, IntentParser(config), grammar)


async def understand_async(config: Config) -> Understanding:
    """While the ears run: they keep listening with the old grammar and recogniser during the
    compile and the new recogniser's loading."""
    check_sentences(config)
    grammar = await compile_grammar_async(config, grammar_cache())
    recognizer = RecognizerProcess(config, grammar)
    try:
        await recognizer.ready()
    except asyncio.CancelledError:
        recognizer.close()
        raise
    return Understanding(config, recognizer, IntentParser(config), grammar)


class SentenceStore:
    """The sentences the phone set, kept in the ears' StateDirectory across restarts.

    They come on top of the config file's `home.sentences`, which the phone cannot change.
    """

    def __init__(self, directory: str | None = None) -> None:
        directory = directory or os.environ.get("STATE_DIRECTORY")
        self.path = Path(directory) / "sentences.json" if directory else None

    def load(self) -> list[SentenceSet]:
        """The phone's sentence sets as last saved: [] without a directory or a file, and (with an
        error logged) when the file cannot be read."""
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text())
            return [SentenceSet.model_validate(item) for item in data]
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("cannot read %s (%s): the phone's sentences are left out", self.path, exc)
            return []

    def save(self, sets: list[SentenceSet]) -> None:
        """Raises PendantError when the disk refuses, so the phone is told it did not stick."""
        if self.path is None:
            return
        try:
            durable.write_file(self.path, json.dumps([s.model_dump() for s in sets]))
        except OSError as exc:
            raise PendantError(
                f"cannot keep the sentences in {self.path}: {exc.strerror}"
            ) from None


def with_sentences(config: Config, sets: list[SentenceSet]) -> Config:
    """The config with the phone's sentences after the config file's own."""
    if not sets:
        return config
    extra = [CustomSentences(intent=s.intent, sentences=list(s.sentences)) for s in sets]
    home = config.home.model_copy(update={"sentences": [*config.home.sentences, *extra]})
    return config.model_copy(update={"home": home})


class EarsService:
    """The ears on the bus: audio in, events out, buttons and commands in.

    A component (`pendant.core.supervise.Component`): ready once subscribed, before the audio
    starts.
    """

    name = "ears"

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        source: AudioSource | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        # Everything that can fail on bad config or a missing model fails here, before READY.
        self.silero = SileroVad(model_path(config, "silero-vad"))
        self.speaker = SpeakerCheck(config.speaker, VoiceStore(), lambda: load_encoder(self.config))
        if self.speaker.in_force():
            self.speaker.encoder()  # a missing model fails here, with the fetch command
        elif config.speaker.check != "off":
            log.warning(
                "speaker.check is %s but no voice is enrolled: everyone is heard",
                config.speaker.check,
            )
        self.source = source or create_source(config.audio)
        self.home_config = config
        """The config file as last read, before the phone's sentences are added."""
        self._publish: Callable[[Event], Awaitable[None]] | None = None
        self.sentence_store = SentenceStore()
        self.phone_sentences = self.sentence_store.load()
        self.sentence_warnings: list[SentenceWarning] = []
        """What the phone is told about `phone_sentences` (understand/sentence_check.py)."""
        # The recogniser's grammar is the slow part of start-up on a Zero 2 W: its own step.
        notify.starting("building the grammar")
        try:
            self.understanding = understand(with_sentences(config, self.phone_sentences))
        except PendantError as exc:
            # Only if the templates changed under them since they were accepted.
            log.error("the phone's sentences are left out: %s", exc)
            self.phone_sentences = []
            self.understanding = understand(config)
        self.heartbeat = notify.Heartbeat()
        self.mute_memory = MuteMemory()
        self.sent = 0
        self.ears: Ears | None = None
        self._rebuilds: set[asyncio.Task[None]] = set()
        self._rebuild_lock = asyncio.Lock()

    async def run(self, ready: Ready = unobserved) -> None:
        """Until the audio source ends, or until cancelled; `ready` once subscribed to the
        buttons and commands, before the first audio."""
        try:
            # Persistent: a mute sent while the ears restart is waiting for them on return.
            async with bus.bus_client(self.config.bus, "pendant-ears", persistent=True) as client:

                async def publish(event: Event) -> None:
                    if event.type in PUBLIC_NAMES:
                        self.sent += 1  # the link receives it: `pendant run` drains on it
                    await bus.publish(client, event)

                self._publish = publish

                self.ears = Ears(
                    self.understanding,
                    self.source,
                    self.silero,
                    publish,
                    self.heartbeat,
                    on_mute=self.mute_memory.save,
                    speaker=self.speaker,
                )
                if self.mute_memory.load():
                    await self.ears.set_muted(True)
                await client.subscribe(bus.topic("button"), qos=bus.QOS)
                await client.subscribe(bus.topic("hardware_mute"), qos=bus.QOS)
                await client.subscribe(bus.command_topic("#"), qos=bus.QOS)
                listen = self.config.listen
                ready(f"listening ({listen.mode}, {self.config.asr.backend})")
                self.sentence_warnings = await self.warnings_for(self.phone_sentences)
                await publish(self._sentences_event())
                await publish(self.speaker.event(self.config.device_id))
                helpers = [
                    asyncio.create_task(self._inbox(client), name="inbox"),
                    asyncio.create_task(self.watch_config(), name="config"),
                ]
                try:
                    await self.ears.run()
                finally:
                    helpers += self._rebuilds
                    for task in helpers:
                        task.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
        except aiomqtt.MqttError as exc:
            raise bus.error(self.config.bus, exc) from None
        finally:
            self.source.close()
            self.understanding.recognizer.close()

    async def _inbox(self, client: aiomqtt.Client) -> None:
        async for event in bus.events(client):
            if self.ears is None:
                continue
            if isinstance(event, Button):
                await self.ears.on_button(event)
            elif isinstance(event, Command) and event.name == "voice":
                await self.on_voice(event)
            elif isinstance(event, Command) and event.name == "sentences":
                # Its own task: a mute must not wait behind a compile.
                task = asyncio.create_task(self._answer_sentences(event.sentences or []))
                self._rebuilds.add(task)
                task.add_done_callback(self._rebuilds.discard)
            else:
                await self.ears.on_command(event)

    async def on_voice(self, command: Command) -> None:
        """A `voice` command from the phone: enrol, done, cancel, forget, forget_all; answered
        with a `voices` event (names and progress only).

        While the check is in force, what would let other voices in (forgetting one, or
        enrolling another) waits for the wearer's tap on the pendant, as a lock heard in
        conversation does: a phone in someone else's hand must not turn "only the wearer"
        off. The first voice, and finishing or cancelling an enrolment, need none.

        While something else waits for a tap (a lock the wearer said, another phone's
        request), the request is refused at once (`not_confirmed`): taking the wait over
        would drop the wearer's lock, and the tap the wearer gives for it would confirm the
        phone's request instead (the LED asks alike for both)."""
        if command.action in TAPPED_VOICE_ACTIONS and self.ears and self.speaker.in_force():
            if self.ears.waiting:
                log.info("voice %s refused: something else waits for a tap", command.action)
                await self._answer_voice("not_confirmed")
                return
            log.info("voice %s waits for a tap on the pendant", command.action)
            await self._answer_voice("tap_to_confirm")
            self.ears.after_tap(
                lambda: self._on_voice(command),
                f"voice {command.action}",
                lambda: self._answer_voice("not_confirmed"),
            )
            return
        await self._on_voice(command)

    async def _answer_voice(self, problem: VoiceProblem | None) -> None:
        if self._publish is not None:
            await self._publish(self.speaker.event(self.config.device_id, problem))

    async def _on_voice(self, command: Command) -> None:
        speaker, problem = self.speaker, None
        if command.action == "enrol" and command.voice is not None:
            try:
                await asyncio.to_thread(speaker.encoder)
            except PendantError as exc:
                log.error("cannot enrol: %s", exc)
                problem = "no_encoder"
            else:
                speaker.start(command.voice)
                task = asyncio.create_task(self._enrol_timeout())
                self._rebuilds.add(task)
                task.add_done_callback(self._rebuilds.discard)
        elif command.action == "done":
            problem = speaker.finish()
        elif command.action == "cancel":
            speaker.cancel()
        elif command.action in ("forget", "forget_all"):
            problem = speaker.forget(command.voice)
        await self._answer_voice(problem)

    async def _enrol_timeout(self) -> None:
        """Drops an enrolment nobody speaks to (see ENROL_TIMEOUT_S)."""
        while self.speaker.enrolling is not None:
            await asyncio.sleep(ENROL_TIMEOUT_S / 4)
            if self.speaker.stale():
                self.speaker.cancel()
                log.info("enrolment dropped: nothing heard for %d s", ENROL_TIMEOUT_S)
                if self._publish is not None:
                    await self._publish(self.speaker.event(self.config.device_id, "timeout"))

    def _sentences_event(self, error: str | None = None) -> Sentences:
        return fitted(
            Sentences(
                device_id=self.config.device_id,
                sets=self.phone_sentences,
                accepted=error is None,
                error=error,
                warnings=self.sentence_warnings,
            )
        )

    async def warnings_for(self, sets: list[SentenceSet]) -> list[SentenceWarning]:
        """What will not work as meant in the sets the ears now run; never refuses them."""
        if not sets:
            return []
        understanding = self.understanding
        try:
            return await sentence_warnings_async(
                self.home_config,
                sets,
                understanding.grammar,
                understanding.parser,
                understanding.recognizer.guessed,
            )
        except Exception:  # advice only: a fault in it must not undo an accepted set
            log.exception("the phone's sentences were not checked for warnings")
            return []

    async def _answer_sentences(self, sets: list[SentenceSet]) -> None:
        async with self._rebuild_lock:  # in the order the phone sent them
            answer = await self.apply_sentences(sets)
        if self._publish is not None:
            await self._publish(answer)

    async def apply_sentences(self, sets: list[SentenceSet]) -> Sentences:
        """Check, keep and run the phone's sentences; or keep the old ones and say why."""
        try:
            # Their own numbering first, so the error points at what the phone sent.
            check_sentences(self.home_config, sets, label="sentences")
            understanding = await understand_async(with_sentences(self.home_config, sets))
        except PendantError as exc:
            log.warning("sentences from the phone refused: %s", exc)
            return self._sentences_event(str(exc)[:500])
        try:
            self.sentence_store.save(sets)
        except PendantError as exc:
            understanding.recognizer.close()
            log.error("%s", exc)
            return self._sentences_event(str(exc)[:500])
        self._swap(understanding)
        self.phone_sentences = sets
        log.info("sentences from the phone: %d intents, grammar rebuilt", len(sets))
        self.sentence_warnings = await self.warnings_for(sets)
        return self._sentences_event()

    def _swap(self, understanding: Understanding) -> None:
        if self.ears is not None:
            self.ears.understanding.recognizer.close()
            self.ears.understanding = understanding
        else:
            self.understanding.recognizer.close()
        self.understanding = understanding

    async def watch_config(self) -> None:
        """Rebuild the grammar when the config file changes; keep the old one if it is bad."""
        if self.config_path is None:
            return
        seen = self.config_path.stat().st_mtime_ns
        while True:
            await asyncio.sleep(CONFIG_POLL_S)
            try:
                mtime = self.config_path.stat().st_mtime_ns
            except OSError:
                continue
            if mtime == seen:
                continue
            seen = mtime
            async with self._rebuild_lock:  # the phone's sentences may be rebuilding too
                try:
                    config = load_config(self.config_path)
                    sentences = with_sentences(config, self.phone_sentences)
                    understanding = await understand_async(sentences)
                except PendantError as exc:
                    log.error("config change ignored, keeping the running one: %s", exc)
                    continue
                self._swap(understanding)
                self.home_config = config
                self.speaker.config = config.speaker
            log.info("config changed: grammar rebuilt")


def component(
    config: Config, config_path: Path | None, source: AudioSource | None = None
) -> EarsService:
    """The ears, their models loaded and their grammar built (`pendant.app.services`).

    `source`: audio to hear instead of the configured one (`pendant run`'s simulation).
    """
    notify.starting("loading the speech models")
    return EarsService(config, config_path, source)
