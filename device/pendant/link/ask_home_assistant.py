"""Asking Home Assistant's conversation agent over its WebSocket API: its Assist pipeline's
intent stage (`assist_pipeline/run`, as its own Assist dialog sends text) for the pendant's
device, else `conversation/process`.

Home Assistant runs the text through Assist's intents and, when the home set one up, its LLM
agent ("prefer handling commands locally"); whatever it did, it did itself, so an answer here
is only words to speak and whether something was done (`action_done`). The pendant is a
device in Home Assistant (MQTT discovery, identifier `pendant_<device_id>`): when the token
may read the device registry, the request names that device, so "turn on the lights" means
the lights of the pendant's area there. Only the pipeline takes a device (`device_id`):
`conversation/process` has no such key (Home Assistant 2026.2 refuses it), so that is used
only for a pendant Home Assistant does not know, or with `escalate.agent_id` (a pipeline runs
its own agent). A pipeline's agent may be an LLM in somebody's cloud, where
`conversation/process` without `agent_id` is always Home Assistant's own, in the house: so the
device goes only through a pipeline whose agent is Home Assistant's own (the preferred one if
it is), named in the request; a home with none gets `conversation/process` without the device.
The device's id, its area and that pipeline are looked up over the same connection as the
question, and kept for `REGISTRY_KEEP_S`: a pendant Home Assistant has not discovered yet, or
moved to another area, is looked up again after that.

The room the wearer is in (`cmd/area`) is not sent: Home Assistant's conversation API takes
no area, only the device, and the link neither rewrites the wearer's question nor edits Home
Assistant's registry. So "here" is the pendant's area in Home Assistant (the answer's `area`
says which), which an owner with room presence keeps to the pendant's own room.

One connection per question: a question every few minutes at most does not pay for a socket
held open, and a Home Assistant restart between questions needs no reconnect logic.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pendant.core.config import Config
from pendant.core.events import Ask
from pendant.core.home_assistant import HomeAssistantError, Session, connected
from pendant.core.names import NAME_MAX_CHARS, NAME_PATTERN
from pendant.link.ask_http import AskError
from pendant.link.ask_reply import Reply

TOKEN_HINT = (
    "make a long-lived access token on your Home Assistant profile page (Security tab) and "
    "put it in escalate.token_file"
)
MAX_MESSAGE_BYTES = 256 * 1024
"""A conversation reply is a few KiB; the device registry of a big home a few hundred."""
MAX_REGISTRY_BYTES = 16 * 1024 * 1024
BUILT_IN_AGENT = "conversation.home_assistant"
"""Home Assistant's own agent (Assist's intents), which runs in the house."""
REGISTRY_KEEP_S = 300.0
"""How long the pendant's device id and area in Home Assistant are kept before a question
looks them up again (one registry read over the question's connection)."""


def reply_of(result: Any) -> Reply:
    """The words and outcome of a `conversation/process` result."""
    try:
        response = result["response"]
        kind = response.get("response_type")
        speech = response.get("speech") or {}
        text = (speech.get("plain") or {}).get("speech") or ""
        if not isinstance(text, str):
            raise TypeError("speech")
    except (KeyError, TypeError, AttributeError):
        raise AskError("Home Assistant answered with no conversation response in it") from None
    if kind == "error":
        code = str((response.get("data") or {}).get("code", ""))[:40]
        return Reply(text.strip(), refused=code or "error")
    # "What time is it" is an `action_done` too: something was done only if a target was.
    done = (response.get("data") or {}).get("success") if kind == "action_done" else None
    return Reply(text.strip(), acted=isinstance(done, list) and bool(done))


class HomeAssistantTarget:
    """`escalate.target = "home_assistant"`: implements `pendant.link.ask.Target`."""

    name = "home_assistant"

    def __init__(
        self, config: Config, token: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self._token = token
        self._clock = clock
        self._device: tuple[str, str | None, str] | None = None
        """The pendant's device id and area name in Home Assistant, and the local pipeline to
        ask it through, when looked up."""
        self._looked_up_at = -float("inf")
        cafile = config.escalate.cafile
        self._cafile = Path(cafile) if cafile else None

    async def ask(self, ask: Ask, context: str | None = None, area: str | None = None) -> Reply:
        """Home Assistant's answer to `ask`; AskError when there is none to use. Neither
        `context` nor `area` is sent: Home Assistant acts on what it is told, so printed words
        must not reach it, and it knows the pendant's area from the device it names."""
        escalate = self.config.escalate
        try:
            async with connected(
                escalate.url or "",
                self._token,
                cafile=self._cafile,
                timeout_s=escalate.timeout_s,
                max_bytes=MAX_REGISTRY_BYTES if self._stale() else MAX_MESSAGE_BYTES,
                key="escalate.url",
                token_hint=TOKEN_HINT,
                agent="pendant-link",
            ) as session:
                if self._stale():
                    self._looked_up_at = self._clock()
                    self._device = await self._own_device(session)
                data: dict[str, Any] = {"text": ask.text, "language": self.config.language}
                if escalate.agent_id:
                    data["agent_id"] = escalate.agent_id
                # A pipeline runs its own agent: with one named, no device goes.
                device = None if escalate.agent_id else self._device
                if device is not None:
                    run = await session.stream(
                        "assist_pipeline/run",
                        "intent-end",
                        start_stage="intent",
                        end_stage="intent",
                        input={"text": ask.text},
                        device_id=device[0],
                        pipeline=device[2],
                        timeout=escalate.timeout_s,
                    )
                    result = run.get("intent_output")
                else:
                    result = await session.call("conversation/process", **data)
                reply = reply_of(result)
                return dataclasses.replace(reply, area=device[1] if device else None)
        except HomeAssistantError as exc:
            raise AskError(str(exc)) from None

    def _stale(self) -> bool:
        return self._clock() - self._looked_up_at >= REGISTRY_KEEP_S

    async def _own_device(self, session: Session) -> tuple[str, str | None, str] | None:
        """This pendant's device id in Home Assistant, the name of its area there (None: in
        none) and a pipeline of Home Assistant's own agent to ask it through, if the token may
        read the registries, Home Assistant discovered it and has such a pipeline."""
        pipeline = await self._local_pipeline(session)
        if pipeline is None:
            return None
        try:
            devices = await session.call("config/device_registry/list") or []
        except HomeAssistantError:
            return None  # not an administrator's token: asked without the device
        wanted = f"pendant_{self.config.device_id}"
        for device in devices:
            identifiers = device.get("identifiers") or [] if isinstance(device, dict) else []
            if any(isinstance(i, list) and wanted in i for i in identifiers):
                device_id = str(device.get("id") or "")[:64]
                if not device_id:
                    return None
                return device_id, await self._area_name(session, device.get("area_id")), pipeline
        return None

    async def _local_pipeline(self, session: Session) -> str | None:
        """The id of an Assist pipeline whose agent is Home Assistant's own: the preferred
        pipeline if it is one, else the first such (None: none, or the list is not readable)."""
        try:
            listing = await session.call("assist_pipeline/pipeline/list")
        except HomeAssistantError:
            return None
        pipelines = listing.get("pipelines") if isinstance(listing, dict) else None
        if not isinstance(pipelines, list):
            return None
        local = [
            str(p["id"])[:64]
            for p in pipelines
            if isinstance(p, dict)
            and p.get("conversation_engine") == BUILT_IN_AGENT
            and isinstance(p.get("id"), str)
            and p["id"]
        ]
        preferred = listing.get("preferred_pipeline")
        return preferred if preferred in local else (local[0] if local else None)

    async def _area_name(self, session: Session, area_id: Any) -> str | None:
        """The name of the area `area_id` (None for none, or one the registry lacks)."""
        if not isinstance(area_id, str) or not area_id:
            return None
        try:
            areas = await session.call("config/area_registry/list") or []
        except HomeAssistantError:
            return None
        for area in areas:
            if isinstance(area, dict) and area.get("area_id") == area_id:
                name = str(area.get("name") or "")
                # As an answer's `area` may carry it; one the pendant cannot name goes unsaid.
                fits = len(name) <= NAME_MAX_CHARS and re.fullmatch(NAME_PATTERN, name)
                return name if fits else None
        return None
