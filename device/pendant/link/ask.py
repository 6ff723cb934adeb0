"""Asking a bigger model what the closed set cannot hear: text in, an `Answer` (and at most one
intent) out.

The ears publish an `Ask` on the bus (`pendant-bus/ask`, theirs alone) with the words their
open-vocabulary recogniser heard; the link alone sends them on, to the one target the wearer
configured (`[escalate]`), and publishes what came back as its own `Answer`, for the phones to
speak. Never audio, never frames: an `Ask` holds text, and this module sends nothing else.

What keeps this door narrow (the ears hold the microphone, and free text is what every other
rule of the gate keeps in):

- off unless `escalate.enabled`;
- an `Ask` is taken only while the wearer is asking: one per press of the button (within
  `ASK_AFTER_PRESS_S`; a press that turned out to be no talk, `cancel`, takes none), and
  after an answer to such a question at most `FOLLOW_UPS` more, each within `FOLLOW_UP_S` of
  the last answer. A follow-up's answer never earns more; no answer, a refusal or a failure
  closes the window. The ears can open neither: the button is the body's, the answers the
  link's. A press or a question older than `ASK_AFTER_PRESS_S` by its own time (replayed
  by the bus after the link was away) or retained is not taken. A question that starts with
  one of `escalate.ask_phrases` ("ask home assistant, ...": said on purpose, in conversation
  mode) is taken without a press, and earns follow-ups as a press does; the phrase itself
  is not sent (`Asker.question`). The ears could claim a phrase: such questions are held to
  the rate limit alone (`ask_phrases = []` turns them off);
- the text is what a person reads on the phone: NFC, words one space apart, letters, marks,
  digits, punctuation and symbols only (no invisible or spacing characters to hide a message
  in), and nothing that reads as encoded bytes (`pendant.link.blobs`); at most `ASK_BURST`
  at once, then one per `ASK_EVERY_S`;
- what goes with it is the link's own: to a chat server the room (`cmd/area`, else
  `home.default_area`), to Home Assistant the pendant's device id (whose area it knows), and
  what the camera read within `SCENE_CONTEXT_S`, to the chat target only and then with its
  tools withheld: printed words must not switch anything;
- what the target answers is words to speak, bounded, published through the gate like any
  event; a tool call is taken only as one of `TOOLS` on a switchable device of the config (or
  the lights of an area), and then leaves as an intent the gate judges as it judges the ears'.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from typing import Literal, Protocol

from pendant.core import wire
from pendant.core.asking import FOLLOW_UP_S, after_ask_phrase
from pendant.core.config import Config
from pendant.core.events import Answer, AnswerOutcome, Ask, Button, Intent, Scene, Slot
from pendant.core.mqtt import read_secret
from pendant.core.names import normalize
from pendant.link.ask_http import AskError
from pendant.link.ask_reply import Reply, ToolCall
from pendant.link.blobs import looks_like_blob
from pendant.link.gate import BLOB
from pendant.link.ratelimit import TokenBucket

log = logging.getLogger(__name__)

ASK_AFTER_PRESS_S = 30.0
"""A press of the button opens asking for this long: the utterance, its transcription, and
the time the ears take to say it."""
FOLLOW_UPS = 2
"""After an answer, this many questions more may come without the button, each within
`FOLLOW_UP_S` (pendant.core.asking) of the last answer (conversation mode)."""
SCENE_CONTEXT_S = 60.0
"""A question within this long of a scene ("read this", then "what allergens does it list")
goes with what the camera read and saw: its text and labels, never pixels."""
ASK_BURST = 3
ASK_EVERY_S = 10.0
MAX_ANSWER_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_READABLE = frozenset(["L", "M", "N", "P", "S"])
"""Unicode categories (first letter) a question may hold, besides single ASCII spaces."""
Via = Literal["press", "phrase", "follow_up"]


class Target(Protocol):
    """Where questions go: `pendant.link.ask_home_assistant` or `pendant.link.ask_openai`."""

    name: str

    async def ask(self, ask: Ask, context: str | None, area: str | None) -> Reply:
        """The reply to `ask` (with `context`, what the camera just read, and the wearer's
        `area`, if any); AskError when there is none to use."""
        ...


def target_of(config: Config) -> Target:
    """The target `config.escalate` names, with its token read (ConfigError if unreadable)."""
    escalate = config.escalate
    token = read_secret(escalate.token_file, "escalate.token_file")
    if escalate.target == "home_assistant":
        from pendant.link.ask_home_assistant import HomeAssistantTarget

        if token is None:
            from pendant.core.errors import ConfigError

            raise ConfigError("escalate.target 'home_assistant' needs escalate.token_file")
        return HomeAssistantTarget(config, token)
    import ssl

    from pendant.link.ask_openai import OpenAiTarget

    tls = None
    if escalate.cafile:
        try:
            tls = ssl.create_default_context(cafile=escalate.cafile)
        except (OSError, ssl.SSLError) as exc:
            from pendant.core.errors import ConfigError

            why = getattr(exc, "strerror", None) or exc
            raise ConfigError(f"escalate.cafile: cannot use {escalate.cafile}: {why}") from None
    return OpenAiTarget(config, token, tls)


def scene_context(scene: Scene) -> str | None:
    """What a scene tells a model, in words: the text read, the things seen; None if nothing."""
    parts = []
    if scene.text:
        parts.append(f"The camera read: {' / '.join(scene.text.split(chr(10)))}")
    if scene.labels:
        parts.append("It saw: " + ", ".join(label.name for label in scene.labels))
    return spoken(". ".join(parts)) or None


def readable(text: str) -> bool:
    """Whether `text` is what the phone shows as it is: NFC, words one space apart, and no
    character that a reader cannot see (controls, odd spaces, joiners)."""
    if unicodedata.normalize("NFC", text) != text or " ".join(text.split(" ")) != text:
        return False
    words = text.split(" ")
    return all(words) and all(
        unicodedata.category(c)[0] in _READABLE for word in words for c in word
    )


def spoken(text: str) -> str:
    """`text` as an answer may carry it: no control characters, at most `MAX_ANSWER_CHARS`."""
    return _CONTROL.sub(" ", text).strip()[:MAX_ANSWER_CHARS]


class Asker:
    """The link's side of asking: which `Ask` it takes, and the `Answer` it makes of one."""

    def __init__(
        self,
        config: Config,
        target: Target,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.target = target
        self._clock = clock
        self._bucket = TokenBucket(ASK_BURST, ASK_EVERY_S, clock)
        self._press_until = -float("inf")
        self._press_asks = 0
        self._follow_up_until = -float("inf")
        self._follow_ups = 0
        self._via: dict[str, Via] = {}
        self._scene: tuple[float, str | None] = (-float("inf"), None)
        self.area: str | None = config.home.default_area
        """The room the wearer is in, as the link forwarded it (`cmd/area`), sent with a
        question; the ears' word is not taken for it."""
        self.refused: dict[str, int] = {}
        """Asks not sent, by reason: off, stale, form, blob, empty, not asking, rate."""

    def saw(self, scene: Scene) -> None:
        """The eyes published `scene` (the link relayed it): context for the next minute."""
        self._scene = (self._clock(), scene_context(scene))

    def button(self, event: Button) -> None:
        """The body's button: a press opens one question; a `cancel` (no talk) closes it."""
        if _stale(event.timestamp_ms):
            return
        if event.action == "press":
            self.pressed()
        elif event.action == "cancel":
            self._press_asks = 0

    def pressed(self) -> None:
        """A press of the button, now (what `button` does for a fresh `press`)."""
        self._press_until = self._clock() + ASK_AFTER_PRESS_S
        self._press_asks = 1

    def taken(self, ask: Ask) -> bool:
        """Whether `ask` may be sent (see the module's docstring); counted in `refused` if not."""
        now = self._clock()
        via: Via | None = None
        if now <= self._press_until and self._press_asks > 0:
            via = "press"
        elif now <= self._follow_up_until and self._follow_ups > 0:
            via = "follow_up"
        elif after_ask_phrase(ask.text, self.config.escalate.ask_phrases) is not None:
            via = "phrase"
        why = None
        if not self.config.escalate.enabled:
            why = "off"
        elif _stale(ask.timestamp_ms):
            why = "stale"
        elif not readable(ask.text):
            why = "form"
        elif looks_like_blob(ask.text) or BLOB.search(ask.text):
            why = "blob"
        elif not self.question(ask):
            why = "empty"  # the phrase and nothing after it
        elif via is None:
            why = "not asking"
        elif not self._bucket.take():
            why = "rate"
        if why is not None:
            self.refused[why] = self.refused.get(why, 0) + 1
            log.warning("ask: not sent (%s)", why)
            return False
        if via == "press":
            self._press_asks -= 1
        elif via == "follow_up":
            self._follow_ups -= 1
        self._via[ask.id] = via  # type: ignore[assignment]
        return True

    def question(self, ask: Ask) -> str:
        """What is sent of `ask`: its text without the "ask" phrase it starts with, if any."""
        rest = after_ask_phrase(ask.text, self.config.escalate.ask_phrases)
        return ask.text if rest is None else rest

    async def answer(self, ask: Ask) -> tuple[Answer, Intent | None]:
        """Asks the target; its answer, and the intent its tool call makes (if it made one).

        Never raises: no answer in `escalate.timeout_s` is `no_answer`, an unreachable or
        garbled one (or any other failure) `failed`, each logged in one line. What is sent
        is `question(ask)`, and the answer carries it."""
        via = self._via.pop(ask.id, "follow_up")
        ask = ask.model_copy(update={"text": self.question(ask)})
        seen_at, context = self._scene
        if self._clock() - seen_at > SCENE_CONTEXT_S or self.target.name != "openai":
            context = None  # Home Assistant acts on its own: printed words are no command
        wait_s = self.config.escalate.timeout_s
        try:
            async with asyncio.timeout(wait_s):
                reply = await self.target.ask(ask, context, self.area)
        except TimeoutError:
            log.warning("ask: no answer from %s in %.0f s", self.target.name, wait_s)
            reply = None
            outcome: AnswerOutcome = "no_answer"
        except AskError as exc:
            log.warning("ask: %s", spoken(str(exc)))
            reply, outcome = None, "failed"
        except Exception as exc:  # a target's bug must not leave the wearer waiting
            log.warning("ask: %s failed: %s: %s", self.target.name, type(exc).__name__, exc)
            reply, outcome = None, "failed"
        intent = None
        if reply is not None:
            if reply.refused:
                log.warning("ask: %s said no (%s)", self.target.name, spoken(reply.refused))
                outcome = "refused"
            elif reply.call is not None:
                intent = self._intent(ask, reply.call)
                outcome = "acted"
            elif reply.acted:
                outcome = "acted"
            else:
                outcome = "answered" if reply.text else "no_answer"
        if outcome in ("answered", "acted"):
            # A follow-up's answer reopens the window, but only a press (or a phrase, as
            # deliberate) grants follow-ups.
            if via in ("press", "phrase"):
                self._follow_ups = FOLLOW_UPS
            self._follow_up_until = self._clock() + FOLLOW_UP_S
        else:
            self._follow_up_until = -float("inf")
        text = spoken(reply.text) if reply is not None else ""
        # Home Assistant hears the pendant's device, and resolves "here" by its own area for
        # it (`pendant.link.ask_home_assistant`); a chat server hears the link's room.
        area = self.area
        if self.target.name == "home_assistant":
            area = reply.area if reply is not None else None
        return self._answer(ask, context, text, outcome, area), intent

    def _answer(
        self, ask: Ask, context: str | None, text: str, outcome: AnswerOutcome, area: str | None
    ) -> Answer:
        return Answer(
            device_id=self.config.device_id,
            question=ask.text,
            context=context,
            area=area,
            text=text,
            outcome=outcome,
            target=self.config.escalate.target,
            session_id=ask.session_id,
        )

    def _intent(self, ask: Ask, call: ToolCall) -> Intent:
        """The intent a checked tool call makes: as the ears would say it ("turn off the kitchen
        lights"; "turn on the lights in the kitchen", the lights alone)."""
        raw = " ".join(normalize(call.value))
        if call.slot == "name":
            device = call.device(self.config)
            slots = [Slot(name="name", value=call.value, raw_value=raw, entity="name",
                          entity_id=device.entity_id)]  # fmt: skip
        else:
            slots = [
                Slot(name="area", value=call.value, raw_value=raw, entity="area"),
                Slot(name="domain", value="light", raw_value="", entity="domain"),
            ]
        return Intent(
            device_id=self.config.device_id,
            name=call.intent,
            text=call.sentence,
            confidence=1.0,
            slots=slots,
            session_id=ask.session_id,
        )


def _stale(timestamp_ms: int) -> bool:
    """An event older than `ASK_AFTER_PRESS_S` by its own time (or from the future)."""
    age_ms = wire.now_ms() - timestamp_ms
    return not -60_000 <= age_ms <= ASK_AFTER_PRESS_S * 1000
