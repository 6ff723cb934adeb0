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
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiomqtt

from pendant.core.events import EYES_INTENTS, Event, EventError, Intent, parse_event
from pendant.core.mqtt import Client, private_client_id, read_secret
from pendant.core.wire import EYES_INTENT_TOPIC, PREFIX, QOS, RETAINED, topic

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
    "events",
    "private_client_id",
    "publish",
    "read_secret",
    "topic",
    "topic_of",
]


def topic_of(event: Event) -> str:
    """The topic `event` is published on: its type's, but the eyes' own for their intents."""
    if isinstance(event, Intent) and event.name in EYES_INTENTS:
        return EYES_INTENT_TOPIC
    return topic(event.type)


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
    async for message in client.messages:
        try:
            yield parse_event(bytes(message.payload))  # type: ignore[arg-type]
        except EventError as exc:
            log.warning("bus: ignored a bad event on %s: %s", message.topic, exc)
