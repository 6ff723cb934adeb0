"""Asking Home Assistant's conversation agent: `conversation/process` over its WebSocket API.

Home Assistant runs the text through Assist's intents and, when the home set one up, its LLM
agent ("prefer handling commands locally"); whatever it did, it did itself, so an answer here
is only words to speak and whether something was done (`action_done`). The pendant is a
device in Home Assistant (MQTT discovery, identifier `pendant_<device_id>`): when the token
may read the device registry, the request names that device, so "turn on the lights" means
the lights of the pendant's area there.

One connection per question: a question every few minutes at most does not pay for a socket
held open, and a Home Assistant restart between questions needs no reconnect logic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pendant.core.config import Config
from pendant.core.events import Ask
from pendant.core.home_assistant import HomeAssistantError, Session, connected
from pendant.link.ask_http import AskError
from pendant.link.ask_reply import Reply

TOKEN_HINT = (
    "make a long-lived access token on your Home Assistant profile page (Security tab) and "
    "put it in escalate.token_file"
)
MAX_MESSAGE_BYTES = 256 * 1024
"""A conversation reply is a few KiB; the device registry of a big home a few hundred."""
MAX_REGISTRY_BYTES = 16 * 1024 * 1024


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

    def __init__(self, config: Config, token: str) -> None:
        self.config = config
        self._token = token
        self._device_id: str | None = None
        self._looked_up = False
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
                max_bytes=MAX_REGISTRY_BYTES if not self._looked_up else MAX_MESSAGE_BYTES,
                key="escalate.url",
                token_hint=TOKEN_HINT,
                agent="pendant-link",
            ) as session:
                if not self._looked_up:
                    self._looked_up = True
                    self._device_id = await self._own_device(session)
                data: dict[str, Any] = {"text": ask.text, "language": self.config.language}
                if escalate.agent_id:
                    data["agent_id"] = escalate.agent_id
                if self._device_id:
                    data["device_id"] = self._device_id
                return reply_of(await session.call("conversation/process", **data))
        except HomeAssistantError as exc:
            raise AskError(str(exc)) from None

    async def _own_device(self, session: Session) -> str | None:
        """This pendant's device id in Home Assistant, if the token may read the registry."""
        try:
            devices = await session.call("config/device_registry/list") or []
        except HomeAssistantError:
            return None  # not an administrator's token: asked without the device
        wanted = f"pendant_{self.config.device_id}"
        for device in devices:
            identifiers = device.get("identifiers") or [] if isinstance(device, dict) else []
            if any(isinstance(i, list) and wanted in i for i in identifiers):
                return str(device.get("id"))[:64] or None
        return None
