"""Asking a bigger model what the closed set cannot hear: text in, an `Answer` (and at most one
intent) out.

The ears publish an `Ask` on the bus (`pendant-bus/ask`, theirs alone) with the words their
open-vocabulary recogniser heard; the link alone sends them on, to the one target the wearer
configured (`[escalate]`), and publishes what came back as its own `Answer`, for the phones to
speak. Never audio, never frames: an `Ask` holds text, and this module sends nothing else.

What keeps this door narrow (the ears hold the microphone, and free text is what every other
rule of the gate keeps in):

- off unless `escalate.enabled`;
- an `Ask` is taken only while the wearer is asking: within `ASK_AFTER_PRESS_S` of a press of
  the button (press-to-talk), or within `FOLLOW_UP_S` of an answer (the follow-up window);
  the ears cannot open either, since the button is the body's and the answer the link's;
- at most `ASK_BURST` at once, then one per `ASK_EVERY_S`; text that reads as encoded bytes
  is refused (`pendant.link.blobs`);
- what the target answers is words to speak, bounded, published through the gate like any
  event; a tool call is taken only as one of `TOOLS` on a switchable device or area of the
  config (`pendant.link.ask_openai`), and then leaves as an intent the gate judges as it judges
  the ears'.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

from pendant.core.config import Config
from pendant.core.events import Answer, AnswerOutcome, Ask, Intent, Scene, Slot
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
SCENE_CONTEXT_S = 60.0
"""A question within this long of a scene ("read this", then "what allergens does it list")
goes with what the camera read and saw: its text and labels, never pixels."""
FOLLOW_UP_S = 10.0
"""After an answer, a question more may come without the button (conversation mode)."""
ASK_BURST = 3
ASK_EVERY_S = 10.0
MAX_ANSWER_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Target(Protocol):
    """Where questions go: `pendant.link.ask_home_assistant` or `pendant.link.ask_openai`."""

    name: str

    async def ask(self, ask: Ask, context: str | None) -> Reply:
        """The reply to `ask` (with `context`, what the camera just read, if any); AskError
        when there is none to use."""
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

    tls = ssl.create_default_context(cafile=escalate.cafile) if escalate.cafile else None
    return OpenAiTarget(config, token, tls)


def scene_context(scene: Scene) -> str | None:
    """What a scene tells a model, in words: the text read, the things seen; None if nothing."""
    parts = []
    if scene.text:
        parts.append(f"The camera read: {' / '.join(scene.text.split(chr(10)))}")
    if scene.labels:
        parts.append("It saw: " + ", ".join(label.name for label in scene.labels))
    return spoken(". ".join(parts)) or None


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
        self._pressed_at = -float("inf")
        self._answered_at = -float("inf")
        self._scene: tuple[float, str | None] = (-float("inf"), None)
        self.refused: dict[str, int] = {}
        """Asks not sent, by reason: off, not asking, rate, blob."""

    def saw(self, scene: Scene) -> None:
        """The eyes published `scene` (the link relayed it): context for the next minute."""
        self._scene = (self._clock(), scene_context(scene))

    def pressed(self) -> None:
        """The wearer pressed the button (a `button` event's press, from the body)."""
        self._pressed_at = self._clock()

    def taken(self, ask: Ask) -> bool:
        """Whether `ask` may be sent (see the module's docstring); counted in `refused` if not."""
        now = self._clock()
        why = None
        if not self.config.escalate.enabled:
            why = "off"
        elif now - self._pressed_at > ASK_AFTER_PRESS_S and now - self._answered_at > FOLLOW_UP_S:
            why = "not asking"
        elif looks_like_blob(ask.text) or BLOB.search(ask.text):
            why = "blob"
        elif not self._bucket.take():
            why = "rate"
        if why is not None:
            self.refused[why] = self.refused.get(why, 0) + 1
            log.warning("ask: not sent (%s)", why)
            return False
        return True

    async def answer(self, ask: Ask) -> tuple[Answer, Intent | None]:
        """Asks the target; its answer, and the intent its tool call makes (if it made one).

        Never raises for the target's sake: no answer in `escalate.timeout_s` is `no_answer`,
        an unreachable or garbled one `failed`, each logged in one line."""
        seen_at, context = self._scene
        if self._clock() - seen_at > SCENE_CONTEXT_S:
            context = None
        try:
            async with asyncio.timeout(self.config.escalate.timeout_s):
                reply = await self.target.ask(ask, context)
        except TimeoutError:
            log.warning(
                "ask: no answer from %s in %.0f s", self.target.name, self.config.escalate.timeout_s
            )
            return self._answer(ask, context, "", "no_answer"), None
        except AskError as exc:
            log.warning("ask: %s", exc)
            return self._answer(ask, context, "", "failed"), None
        intent = self._intent(ask, reply.call) if reply.call and not reply.refused else None
        if reply.refused:
            log.warning("ask: %s said no (%s)", self.target.name, reply.refused)
            outcome: AnswerOutcome = "refused"
        elif intent is not None or reply.acted:
            outcome = "acted"
        elif reply.text:
            outcome = "answered"
        else:
            outcome = "no_answer"
        self._answered_at = self._clock()
        return self._answer(ask, context, spoken(reply.text), outcome), intent

    def _answer(self, ask: Ask, context: str | None, text: str, outcome: AnswerOutcome) -> Answer:
        return Answer(
            device_id=self.config.device_id,
            question=ask.text,
            context=context,
            text=text,
            outcome=outcome,
            target=self.config.escalate.target,
            session_id=ask.session_id,
        )

    def _intent(self, ask: Ask, call: ToolCall) -> Intent:
        entity_id = None
        if call.slot == "name":
            device = next(d for d in self.config.home.devices if d.name == call.value)
            entity_id = device.entity_id
        slot = Slot(
            name=call.slot,
            value=call.value,
            raw_value=" ".join(normalize(call.value)),
            entity=call.slot,
            entity_id=entity_id,
        )
        return Intent(
            device_id=self.config.device_id,
            name=call.intent,
            text=call.sentence,
            confidence=1.0,
            slots=[slot],
            session_id=ask.session_id,
        )
