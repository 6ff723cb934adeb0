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
  the ears cannot open either, since the button is the body's and the answer the link's; or
  when its text starts with one of `escalate.ask_phrases` ("ask home assistant ..."), which
  the wearer says on purpose, in conversation mode; the phrase itself is not sent;
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

from pendant.core.asking import FOLLOW_UP_S, after_ask_phrase
from pendant.core.config import Config
from pendant.core.events import Answer, AnswerOutcome, Ask, Intent, Slot
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
ASK_BURST = 3
ASK_EVERY_S = 10.0
MAX_ANSWER_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Target(Protocol):
    """Where questions go: `pendant.link.ask_home_assistant` or `pendant.link.ask_openai`."""

    name: str

    async def ask(self, ask: Ask) -> Reply:
        """The reply to `ask`; AskError when there is none to use."""
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
        self.refused: dict[str, int] = {}
        """Asks not sent, by reason: off, not asking, empty, rate, blob."""

    def pressed(self) -> None:
        """The wearer pressed the button (a `button` event's press, from the body)."""
        self._pressed_at = self._clock()

    def taken(self, ask: Ask) -> bool:
        """Whether `ask` may be sent (see the module's docstring); counted in `refused` if not."""
        now = self._clock()
        why = None
        asking = (
            now - self._pressed_at <= ASK_AFTER_PRESS_S or now - self._answered_at <= FOLLOW_UP_S
        )
        if not self.config.escalate.enabled:
            why = "off"
        elif not self.question(ask):
            why = "empty"  # the phrase and nothing after it
        elif not asking and after_ask_phrase(ask.text, self.config.escalate.ask_phrases) is None:
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

    def question(self, ask: Ask) -> str:
        """What is sent of `ask`: its text without the "ask" phrase it starts with, if any."""
        rest = after_ask_phrase(ask.text, self.config.escalate.ask_phrases)
        return ask.text if rest is None else rest

    async def answer(self, ask: Ask) -> tuple[Answer, Intent | None]:
        """Asks the target; its answer, and the intent its tool call makes (if it made one).

        Never raises for the target's sake: no answer in `escalate.timeout_s` is `no_answer`,
        an unreachable or garbled one `failed`, each logged in one line. What is sent is
        `question(ask)`, and the answer carries it."""
        ask = ask.model_copy(update={"text": self.question(ask)})
        try:
            async with asyncio.timeout(self.config.escalate.timeout_s):
                reply = await self.target.ask(ask)
        except TimeoutError:
            log.warning(
                "ask: no answer from %s in %.0f s", self.target.name, self.config.escalate.timeout_s
            )
            return self._answer(ask, "", "no_answer"), None
        except AskError as exc:
            log.warning("ask: %s", exc)
            return self._answer(ask, "", "failed"), None
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
        return self._answer(ask, spoken(reply.text), outcome), intent

    def _answer(self, ask: Ask, text: str, outcome: AnswerOutcome) -> Answer:
        return Answer(
            device_id=self.config.device_id,
            question=ask.text,
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
