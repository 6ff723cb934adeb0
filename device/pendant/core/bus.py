"""The device-local bus: mosquitto on a unix socket, carrying typed events.

Components never call each other; they publish events here and subscribe to what they need.
Internal topics are `pendant-bus/<event type>`; only the link republishes outside. One
exception: the eyes' intents (what the camera read, free text) go to `pendant-bus/eyes/intent`,
which only the eyes may write (the ACL), so the topic an intent came on says which process
spoke it, and the link holds each to its own rules (`pendant.link.gate`): no other process can pass
its words off as read by the camera.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import os
import stat
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import aiomqtt

from pendant.core.errors import ConfigError

if TYPE_CHECKING:
    # Annotations only: the web server uses read_secret and topic without loading pydantic.
    from pendant.core.config import BusConfig
    from pendant.core.events import Event

log = logging.getLogger(__name__)

T = TypeVar("T")

PREFIX = "pendant-bus"
QOS = 1
# States rather than happenings: retained, so a component that starts (or restarts) later
# knows them at once. The body needs the mute state for its first long hold, the ears the
# privacy switch before they hear anything, the body's LED where the link stands (`link_state`,
# which the link publishes again as `connecting` when it starts, so a stale one from the last
# boot does not say "ready"). The pairing window's state and its offer live only
# as long as the window: the pairing service clears them (an empty retained message). The
# link keeps one command retained too, the area (`pendant-bus/cmd/area`, commands.STATES).
RETAINED = frozenset(
    {
        "status",
        "camera",
        "hardware_mute",
        "sentences",
        "pairing_status",
        "pairing_offer",
        "link_state",
    }
)


def topic(event_type: str) -> str:
    return f"{PREFIX}/{event_type}"


EYES_INTENT_TOPIC = topic("eyes/intent")


def topic_of(event: Event) -> str:
    """The topic `event` is published on: its type's, but the eyes' own for their intents."""
    # Imported here: the web server uses this module without loading pydantic.
    from pendant.core.events import EYES_INTENTS, Intent

    if isinstance(event, Intent) and event.name in EYES_INTENTS:
        return EYES_INTENT_TOPIC
    return topic(event.type)


def _in_credentials_directory(p: Path) -> bool:
    """Whether `p` is one of this service's systemd credentials (LoadCredential=)."""
    own = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(own) and p.resolve().parent == Path(own).resolve()


def read_secret(path: str | None, key: str) -> str | None:
    """A password from a file; refuses files others can read (invariant 4)."""
    if not path:
        return None
    p = Path(path)
    try:
        mode = p.stat().st_mode
        value = p.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {p}: {exc.strerror}") from None
    # systemd 254 and later hand a service with User= its credentials as 0440, in a directory
    # of its own that only it can enter (trixie's 257 does): the group bits there let no one in.
    others = stat.S_IRWXO if _in_credentials_directory(p) else stat.S_IRWXG | stat.S_IRWXO
    if mode & others:
        raise ConfigError(f"{key}: {p} is readable by others: chmod 600 {p}")
    if not value:
        raise ConfigError(f"{key}: {p} is empty")
    return value


def private_client_id(base: str, password: str | None) -> str:
    """`base` tagged with what only the holder of `password` can compute. A broker keys a
    session by client id alone, whoever logs in: any other login that connected with a known
    id would close this client's connection and, with a clean session, drop its queue (what
    the ears said while the link restarted). The tag is the same on every start, so the
    session is kept."""
    if not password:
        return base
    tag = hmac.new(password.encode(), base.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{base}-{tag}"


class Client(aiomqtt.Client):
    """An aiomqtt client whose waits on the broker never lose a cancellation.

    aiomqtt bounds each of them (CONNACK, SUBACK, PUBACK, the disconnect) with
    `asyncio.wait_for`, which on Python 3.11 returns the result instead of raising when the
    cancellation comes in the same loop turn as the broker's answer (fixed in 3.12). The task
    cancelled then goes on as if nothing had happened: a link stopped while a PUBACK was on
    its way kept running its loops, and `systemctl stop` would wait for SIGKILL.
    `asyncio.timeout` raises the cancellation whatever else has happened.
    """

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:
        """`fut`, within `timeout` seconds (None: the client's own; math.inf: no limit)."""
        if timeout is None:
            timeout = self.timeout
        try:
            async with asyncio.timeout(None if timeout == math.inf else timeout):
                return await fut
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None


def bus_client(
    config: BusConfig, client_id: str, persistent: bool = False, will: Event | None = None
) -> Client:
    """A client of the bus. `persistent` keeps its QoS 1 messages queued across restarts.
    The broker sees `client_id` made private to this login (`private_client_id`). `will`:
    what the broker publishes (retained, if its type is) when this client dies unannounced."""
    password = read_secret(config.password_file, "bus.password_file")
    where: dict[str, object] = (
        {"hostname": os.fspath(config.socket), "port": 1883, "transport": "unix"}
        if config.socket
        else {"hostname": config.host, "port": config.port}
    )
    return Client(
        **where,  # type: ignore[arg-type]
        identifier=private_client_id(client_id, password),
        username=config.username,
        password=password,
        clean_session=not persistent,
        will=None
        if will is None
        else aiomqtt.Will(topic_of(will), will.to_json(), qos=QOS, retain=will.type in RETAINED),
    )


async def publish(client: aiomqtt.Client, event: Event) -> None:
    retain = event.type in RETAINED
    await client.publish(topic_of(event), event.to_json(), qos=QOS, retain=retain)


async def events(client: aiomqtt.Client) -> AsyncIterator[Event]:
    """The typed events a subscriber receives; a bad one is logged and skipped, never fatal."""
    from pendant.core.events import EventError, parse_event

    async for message in client.messages:
        try:
            yield parse_event(bytes(message.payload))  # type: ignore[arg-type]
        except EventError as exc:
            log.warning("bus: ignored a bad event on %s: %s", message.topic, exc)
