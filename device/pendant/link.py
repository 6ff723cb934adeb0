"""The link: the only component that talks to the outside broker.

It reads events off the device-local bus, passes each through the schema gate, and publishes
what passes on the public topics (own topics and the Hermes mirror), QoS 1. Availability is
a retained `online`, with a retained `offline` as last will. The bus side and the outside side
are separate tasks with their own reconnect loops, joined by a queue, so an outside outage
never blocks the bus.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import aiomqtt

from pendant import bus, hermes
from pendant.bus import read_secret
from pendant.config import Config
from pendant.events import Event, Intent, NotRecognized, Status, Transcript
from pendant.gate import PUBLIC_NAMES, Gate

log = logging.getLogger(__name__)

RECONNECT_S = 1.0
QUEUE_MAX = 1000

Message = tuple[str, bytes, bool]


class Link:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.gate = Gate()
        self.published: Counter[str] = Counter()
        self.connected = asyncio.Event()
        self.bus_ready = asyncio.Event()
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_MAX)
        self._retry: Event | None = None
        base = f"{config.link.topic_prefix}/{config.device_id}"
        self.base_topic = base
        self.availability_topic = f"{base}/availability"

    @property
    def received(self) -> int:
        """Events read off the bus, passed or dropped."""
        return self.gate.passed + sum(self.gate.dropped.values())

    @property
    def idle(self) -> bool:
        """Nothing admitted is waiting to go out."""
        return self._queue.empty() and self._retry is None

    def messages(self, event: Event) -> list[Message]:
        """What one admitted event becomes on the outside broker."""
        base, mirror = self.base_topic, self.config.link.hermes
        out: list[Message] = []
        match event:
            case Intent():
                out.append((f"{base}/intent/{event.name}", event.to_json(), False))
                if mirror:
                    out.append((*hermes.intent_message(event), False))
            case NotRecognized():
                out.append((f"{base}/not_recognized", event.to_json(), False))
                if mirror:
                    out.append((*hermes.not_recognized_message(event), False))
            case Transcript():
                out.append((f"{base}/transcript", event.to_json(), False))
                if mirror:
                    out.append((*hermes.text_captured_message(event), False))
            case Status():
                out.append((f"{base}/status", event.to_json(), True))
        return out

    async def run(self) -> None:
        await asyncio.gather(self._from_bus(), self._to_outside())

    async def _from_bus(self) -> None:
        while True:
            try:
                async with bus.bus_client(
                    self.config.bus, "pendant-link", persistent=True
                ) as client:
                    # Only what may leave; internal events (button, ...) are not the link's.
                    for name in PUBLIC_NAMES:
                        await client.subscribe(bus.topic(name), qos=bus.QOS)
                    self.bus_ready.set()
                    async for message in client.messages:
                        event = self.gate.admit(bytes(message.payload))  # type: ignore[arg-type]
                        if event is not None:
                            await self._queue.put(event)
            except aiomqtt.MqttError as exc:
                log.warning("link: bus unreachable (%s); retrying in %.0f s", exc, RECONNECT_S)
                await asyncio.sleep(RECONNECT_S)

    def _outside_client(self) -> aiomqtt.Client:
        link = self.config.link
        return aiomqtt.Client(
            hostname=link.host,
            port=link.port,
            identifier=f"pendant-{self.config.device_id}",
            username=link.username,
            password=read_secret(link.password_file, "link.password_file"),
            clean_session=False,
            will=aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True),
        )

    async def _to_outside(self) -> None:
        while True:
            try:
                async with self._outside_client() as client:
                    await client.publish(self.availability_topic, b"online", qos=1, retain=True)
                    self.connected.set()
                    log.info(
                        "link: connected to %s:%d", self.config.link.host, self.config.link.port
                    )
                    try:
                        await self._drain(client)
                    except asyncio.CancelledError:
                        # A clean stop says so at once; the will covers crashes.
                        await client.publish(
                            self.availability_topic, b"offline", qos=1, retain=True
                        )
                        raise
                    finally:
                        self.connected.clear()
            except aiomqtt.MqttError as exc:
                log.warning("link: outside broker unreachable (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_S)

    async def _drain(self, client: aiomqtt.Client) -> None:
        while True:
            event = self._retry or await self._queue.get()
            self._retry = event
            for topic, payload, retain in self.messages(event):
                await client.publish(topic, payload, qos=1, retain=retain)
            self._retry = None
            self.published[event.type] += 1
