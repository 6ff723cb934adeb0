"""The device-local bus: mosquitto on a unix socket, carrying typed events.

Components never call each other; they publish events here and subscribe to what they need.
Internal topics are `pendant-bus/<event type>`; only the link republishes outside. One
exception: the eyes' intents (what the camera read, free text) go to `pendant-bus/eyes/intent`,
which only the eyes may write (the ACL), so the topic an intent came on says which process
spoke it, and the link holds each to its own rules (`pendant.link.gate`): no other process can pass
its words off as read by the camera.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiomqtt

from pendant.core import mqtt
from pendant.core.errors import BusError
from pendant.core.events import (
    EYES_INTENTS,
    Activity,
    Command,
    Event,
    EventError,
    Intent,
    parse_event,
)
from pendant.core.mqtt import Client, private_client_id, read_secret
from pendant.core.wire import EYES_INTENT_TOPIC, PREFIX, QOS, RETAINED, command_topic, topic

if TYPE_CHECKING:
    from pendant.core.config import BusConfig

log = logging.getLogger(__name__)

__all__ = [
    "EYES_INTENT_TOPIC",
    "PREFIX",
    "QOS",
    "RETAINED",
    "Client",
    "bus_client",
    "command_topic",
    "error",
    "events",
    "on_own_topic",
    "private_client_id",
    "publish",
    "read_secret",
    "topic",
    "topic_of",
]


def topic_of(event: Event) -> str:
    """The topic `event` is published on: its type's, but the eyes' own for their intents
    and its own command's for a command (`command_topic`), where the components read it."""
    if isinstance(event, Intent) and event.name in EYES_INTENTS:
        return EYES_INTENT_TOPIC
    if isinstance(event, Command):
        return command_topic(event.name)
    if isinstance(event, Activity):
        # One topic per sensor, so the ACL lets each speak only for its own: the eyes
        # cannot say the mic is idle while the ears record, nor the ears the camera.
        return topic(f"activity/{event.sensor}")
    return topic(event.type)


def bus_client(
    config: BusConfig, client_id: str, persistent: bool = False, will: Event | None = None
) -> Client:
    """A client of the bus. `persistent` keeps its QoS 1 messages queued across restarts.
    The broker sees `client_id` made private to this login (`private_client_id`). `will`:
    what the broker publishes (retained, if its type is) when this client dies unannounced."""
    password = read_secret(config.password_file, "bus.password_file")
    return mqtt.client(
        socket=config.socket,
        host=config.host,
        port=config.port,
        client_id=client_id,
        username=config.username,
        password=password,
        clean_session=not persistent,
        will=None
        if will is None
        else aiomqtt.Will(topic_of(will), will.to_json(), qos=QOS, retain=will.type in RETAINED),
    )


def error(config: BusConfig, exc: aiomqtt.MqttError) -> BusError:
    """The one-line `BusError` for a component whose bus failed (`mqtt.unreachable`), naming
    the config's settings to check."""
    if config.socket:
        where, running = str(config.socket), "is mosquitto running? systemctl status mosquitto"
    else:
        where, running = f"{config.host}:{config.port}", "check bus.host and bus.port"
    return mqtt.unreachable(exc, where, "bus.username and bus.password_file", running)


async def publish(client: aiomqtt.Client, event: Event) -> None:
    """Publish `event` on its topic (`topic_of`) at QoS 1, retained if its type is a state."""
    retain = event.type in RETAINED
    await client.publish(topic_of(event), event.to_json(), qos=QOS, retain=retain)


async def events(client: aiomqtt.Client) -> AsyncIterator[Event]:
    """The typed events a subscriber receives; a bad one is logged and skipped, never fatal.

    An event counts only on its own topic (`topic_of`): the ACL says who may write each
    topic, so a `mic` state on `pendant-bus/cmd/buzz` (which the link may write) or a
    `hardware_mute` on `pendant-bus/activity/camera` (the eyes') is some other process speaking for
    the ears or the body, and is dropped."""
    async for message in client.messages:
        try:
            event = parse_event(bytes(message.payload))  # type: ignore[arg-type]
        except EventError as exc:
            log.warning("bus: ignored a bad event on %s: %s", message.topic, exc)
            continue
        if not on_own_topic(event, message.topic.value):
            continue
        yield event


def on_own_topic(event: Event, topic: str) -> bool:
    """Whether `event` came on its own topic (`topic_of`), the only one whose writers the ACL
    vouches for; logs the one that did not. Every subscriber that acts on bus events holds
    them to this (`events` does it for its readers)."""
    if topic_of(event) == topic:
        return True
    log.warning("bus: ignored a %s event on %s, not its topic", event.type, topic)
    return False
