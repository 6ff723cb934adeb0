"""The link: the only component that talks to the outside broker.

Bus → outside: it reads events off the device-local bus, passes each through the schema gate,
writes what passes to the durable outbox (`pendant.outbox`) and only then acknowledges it on
the bus. A sender publishes from the outbox, in order, QoS 1, and deletes an event only after
the outside broker's PUBACK. Both sessions are persistent (fixed client ids, clean_session
false), so events published on the bus while the link restarts wait for it there.

One queue: on the pendant the link talks to two brokers. The home broker (`link.host`: Home
Assistant, Node-RED) gets the events from the durable outbox, each publish carrying an MQTT 5
Message Expiry Interval (what is left of `link.intent_expiry_s`), so the outbox is the one
queue towards home automation: nothing is acknowledged to the ears that only a broker's RAM
holds, and nothing arrives later than `link.intent_expiry_s`, wherever it waited. The
device-local mosquitto (`link.socket`), where paired phones are, gets the same events from a
second queue, in RAM. With only one of them configured it is the one outside broker. (There
used to be a mosquitto bridge between the two: it acknowledged at once, queued with no expiry
and lost its queue to a power cut; issue 14.)

Outside → bus: commands from the phone (`pendant/<id>/cmd/<name>`) are checked by
`pendant.commands`; valid ones go to the bus as `pendant-bus/cmd/<name>`, malformed ones come
back as a public `error` event. Commands on the home broker (`pendant/<id>/cmd/<name>` there,
when it is not also the phones' broker) come from whoever may publish there: an unmute or a
capture is refused with an `error` (`commands.home_refusal`), so no client of the home broker
can open the microphone or the camera. A retained command is refused, deleted from the
outside broker (an empty retained message on its topic) and reported as an `error`, but for
states (`area`), which are taken retained and kept retained on the bus as well. To see whether
a command was sent retained the outside connections are MQTT 5, subscribed with "retain as
published" (MQTT 3.1.1 brokers clear the flag on live messages) and "no local" (the link's own
deletion does not come back to it as a command).

Error events are rate-limited by a token bucket (`ERROR_BURST` at once, then one per
`ERROR_EVERY_S` seconds); the ones over it are counted in `errors_suppressed` and logged in one
line, not published, so a flood of malformed commands cannot crowd intents out. The outbox
keeps error events in RAM only (`pendant.outbox.VOLATILE`).

Home Assistant discovery (`pendant.discovery`) is published retained on the home broker on
every connect and again a few random seconds after Home Assistant announces `online`; intents
also go out as Home Assistant events on `pendant/<id>/event`.

Each outside message is sent once per event id: the link remembers the last `SENT_WINDOW`
(topic, event id) pairs the outside broker acknowledged and skips them if they come round
again, so Home Assistant's event entity, which does not drop duplicates by `id`, sees an
intent once even when the bus delivers it twice (QoS 1), and an entry sent again after a
reconnect repeats only the message whose PUBACK was missing. That one message may arrive
twice: the link cannot tell a lost PUBLISH from a lost PUBACK, and losing an accepted intent
is worse than a duplicate. The window is in RAM: a link restarted between a PUBACK and the
outbox's delete may still send one again.

To `link.host` the link speaks TLS (`link.tls`, default on but for a loopback host), checking
the broker's certificate against `link.cafile` (default: the system CA store) and its name
against `link.host`; plaintext to another host needs `link.tls = false` and is warned about
at start. Over `link.socket` (the device-local mosquitto) there is no network to protect.

Availability is a retained `online`, with a retained `offline` as last will, on each broker:
on the home broker the will says that the whole pendant dropped off (power, Wi-Fi). The bus
side and each outside side have their own reconnect loops, so an outage of one never blocks
another.

The watchdog (`pendant-link`'s WatchdogSec=) is fed by the senders' progress, not by the loop
turning: a loop that turns while a sender is stuck (an outbox file that no longer reads, a
sender that never comes back from a wait) must get the link restarted. Each outside side has
its own beat, the home broker's sender and the phones' sender alike, and `heartbeat` is as old
as the older of them, so either one stalled stops the pings (the phones' sender stuck on a
broker that no longer answers would otherwise go unnoticed while the home side idles). A
side's beat is beaten when, and only when, that side does one of these:
- gets a PUBACK (or a SUBACK while connecting): every such wait is bounded by `TIMEOUT_S`;
- reads the outbox and finds nothing waiting (`Outbox.readable`: "cannot read" is not
  "empty"), at least every `check_s` while idle;
- waits for an outside broker that is away: a refused or failed connection, then the
  backoff, during which it reads the outbox every `check_s`. A home broker that is down is
  not the link's fault, so the link is not restarted over it (a restart would not bring the
  broker back, and would burn the unit's start limit); a link whose outbox stops reading
  while it waits is.
A connection attempt is bounded too (TIMEOUT_S), so a beat is never more than about
`TIMEOUT_S` + `RECONNECT_MAX_S` away while the link is healthy; WatchdogSec= must be above it.

`python -m pendant.link --config FILE` runs the link alone (the `pendant-link` service).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import ssl
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from pendant import bus, commands, discovery, hermes
from pendant.bus import read_secret
from pendant.config import Config, LinkConfig, load_config
from pendant.device_state import DeviceState
from pendant.errors import PendantError
from pendant.events import (
    Battery,
    Command,
    Error,
    Event,
    Intent,
    NotRecognized,
    Scene,
    Sentences,
    Status,
    Transcript,
)
from pendant.gate import PUBLIC_NAMES, Gate
from pendant.notify import Heartbeat, Heartbeats
from pendant.outbox import RETRY_S, Outbox
from pendant.ratelimit import TokenBucket
from pendant.vocabulary import Vocabulary

# Named, not __name__: under `python -m pendant.link` that would be "__main__".
log = logging.getLogger("pendant.link")

RECONNECT_S = 1.0
RECONNECT_MAX_S = 5.0
TIMEOUT_S = 10.0
COMMAND_QUEUE_MAX = 100
BUS_CLIENT_ID = "pendant-link"
# Error events: 10 at once, then one every 6 s (10 a minute). A phone that gets a command
# wrong hears about the first ones at once; a flood costs at most that many public events.
ERROR_BURST = 10
ERROR_EVERY_S = 6.0
# MQTT 5 sessions end when the client leaves unless they say otherwise: never, as 3.1.1's
# clean_session false (the broker's persistent_client_expiration still applies).
SESSION_EXPIRY_S = 0xFFFFFFFF
# (topic, event id) pairs remembered as sent: far more than a reconnect resends (the head of
# the outbox) or the bus redelivers (what was in flight), a few tens of KB.
SENT_WINDOW = 1024

Message = tuple[str, bytes, bool]


def _payload(message: aiomqtt.Message) -> bytes:
    p = message.payload
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return b"" if p is None else str(p).encode()


async def _race(*coros: Coroutine[Any, Any, None]) -> None:
    """Run loops side by side until the first one ends (by raising); cancel the others."""
    tasks = [asyncio.create_task(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


class SentWindow:
    """The last `size` keys added, oldest forgotten first."""

    def __init__(self, size: int = SENT_WINDOW) -> None:
        self.size = size
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: tuple[str, str]) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


class _Backoff:
    """Reconnect delays, and one log line per outage rather than one per attempt.

    `tick`, if given, runs at least every `tick_s` while the delay lasts: the outside side
    proves there that it is waiting for the broker, not stuck (see `Link.check_outbox`).
    """

    def __init__(
        self, what: str, tick: Callable[[], None] | None = None, tick_s: float = RETRY_S
    ) -> None:
        self.what = what
        self.delay = RECONNECT_S
        self.tick = tick
        self.tick_s = tick_s

    async def failed(self, exc: Exception) -> None:
        level = logging.WARNING if self.delay == RECONNECT_S else logging.DEBUG
        log.log(level, "link: %s unreachable (%s); retrying", self.what, exc)
        deadline = time.monotonic() + self.delay
        while True:
            if self.tick is not None:
                self.tick()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, self.tick_s))
        self.delay = min(self.delay * 2, RECONNECT_MAX_S)

    def ok(self) -> None:
        self.delay = RECONNECT_S


class Side:
    """One broker the link publishes to, with its own queue, sent window and connection.

    The home broker's queue is the durable outbox, the only queue towards home automation
    (see "One queue" in the module's docstring); the phones' broker, when it is another one,
    gets the same events from a queue in RAM: phones read them live, and a link restarted
    in between costs a phone an event, never the home an intent.
    """

    def __init__(self, what: str, outbox: Outbox, *, socket: bool, home: bool) -> None:
        self.what = what
        self.outbox = outbox
        self.socket = socket
        """Reached over link.socket (the device-local mosquitto), else over link.host."""
        self.home = home
        """The home broker: Home Assistant's discovery and birth message are here."""
        self.commands_from_home = False
        """Commands read here came from the home broker: never an unmute or a capture."""
        self.sent = SentWindow()
        self.connected = asyncio.Event()
        self.wake = asyncio.Event()
        self.heartbeat = Heartbeat("outbox sender" if home else "phones' sender")
        """Beaten only by this side's progress (see "The watchdog" in the module's docstring)."""


def tls_context(link: LinkConfig) -> ssl.SSLContext | None:
    """The TLS the link speaks to link.host, or None for plaintext (see `LinkConfig.tls`).

    Checked at start, so a missing or wrong CA file is one line, not a reconnect loop.
    """
    if not link.uses_tls:
        if link.home_host is not None and not link.loopback:
            log.warning(
                "link: plaintext to %s:%d (link.tls = false): its password and every event "
                "cross the network readable",
                link.home_host,
                link.broker_port,
            )
        return None
    try:
        # Verifies the chain and that the certificate names link.host; TLS 1.2 at least.
        context = ssl.create_default_context(cafile=link.cafile)
    except ssl.SSLError as exc:
        raise PendantError(
            f"link.cafile {link.cafile}: not a PEM CA certificate ({exc.reason})"
        ) from None
    except OSError as exc:
        raise PendantError(f"link.cafile {link.cafile}: {exc.strerror or exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Link:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.gate = Gate(Vocabulary.of(config), config.link.gate_burst, config.link.gate_every_s)
        link = config.link
        expiry_s = link.intent_expiry_s
        self.outbox = Outbox(link.outbox_path or None, expiry_s=expiry_s)
        """The durable queue towards the home broker (or the one outside broker)."""
        primary = Side(
            f"home broker {link.home_host}:{link.broker_port}"
            if link.home_host is not None
            else f"outside broker {link.socket}",
            self.outbox,
            socket=link.home_host is None,
            home=True,
        )
        primary.commands_from_home = link.phones_apart
        self.sides = [primary]
        """Where events go: the home broker first; the phones' broker when it is another."""
        if link.phones_apart:
            phones = Side(
                f"phones' broker {link.socket}",
                Outbox(None, expiry_s=expiry_s),
                socket=True,
                home=False,
            )
            self.sides.append(phones)
        self.published: Counter[str] = Counter()
        self.sent = primary.sent
        """(topic, event id) of the outside messages already sent (see the module's docstring)."""
        self.duplicates: Counter[str] = Counter()
        """Outside messages not sent again, by event type."""
        self.commands: Counter[str] = Counter()
        """forwarded, rejected, refused (from the home broker), retained (refused and deleted),
        overflow, failed."""
        self.error_bucket = TokenBucket(ERROR_BURST, ERROR_EVERY_S)
        self.errors_suppressed = 0
        """Error events not published because of the rate limit."""
        self._suppressed_since_report = 0
        self.received = 0
        """Events read off the bus as they were published, passed or dropped."""
        self.state = DeviceState(config.device_id)
        self.connected = primary.connected
        """Connected to the home broker (or the one outside broker)."""
        self.bus_ready = asyncio.Event()
        self._to_bus: asyncio.Queue[Command] = asyncio.Queue(COMMAND_QUEUE_MAX)
        self._command_retry: Command | None = None
        base = f"{config.link.topic_prefix}/{config.device_id}"
        self.base_topic = base
        self.availability_topic = f"{base}/availability"
        self.command_filter = f"{base}/cmd/+"
        self.discovery = discovery.messages(config)
        """What this link announces to Home Assistant, retained; [] when discovery is off."""
        self.announced = 0
        """Times the discovery messages went out."""
        self._ha_online = asyncio.Event()
        self._tls = tls_context(config.link)
        self.heartbeat = Heartbeats(*(side.heartbeat for side in self.sides))
        """Every side's sender, as old as the stalest (see "The watchdog" in the docstring)."""
        self.check_s = RETRY_S
        """How often an idle or waiting sender reads the outbox again (and so beats)."""

    @property
    def idle(self) -> bool:
        """Nothing admitted is waiting to go out."""
        return all(len(side.outbox) == 0 for side in self.sides)

    def messages(self, event: Event) -> list[Message]:
        """What one admitted event becomes on the outside broker."""
        base, mirror = self.base_topic, self.config.link.hermes
        out: list[Message] = []
        match event:
            case Intent():
                out.append((f"{base}/intent/{event.name}", event.to_json(), False))
                if self.config.link.discovery != "off":
                    out.append((*discovery.event_message(self.config, event), False))
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
            case Error():
                out.append((f"{base}/error", event.to_json(), False))
            case Battery():
                out.append((f"{base}/battery", event.to_json(), True))
            case Scene():
                out.append((f"{base}/scene", event.to_json(), False))
            case Sentences():
                out.append((f"{base}/sentences", event.to_json(), True))
        return out

    async def run(self) -> None:
        try:
            await _race(self._from_bus(), *(self._to_outside(side) for side in self.sides))
        finally:
            for side in self.sides:
                side.outbox.close()

    # -- the bus side ----------------------------------------------------------------------

    async def _from_bus(self) -> None:
        backoff = _Backoff("bus")
        while True:
            client = bus.bus_client(self.config.bus, BUS_CLIENT_ID, persistent=True)
            # Acknowledge a bus message only once the outbox has it, so a link killed in
            # between gets it again from its session. aiomqtt does not expose paho's manual
            # acks; its paho client does.
            paho = client._client
            paho.manual_ack_set(True)
            try:
                async with client:
                    # Only what may leave; internal events (button, command) are not the link's.
                    for name in sorted(PUBLIC_NAMES):
                        await client.subscribe(bus.topic(name), qos=bus.QOS, timeout=TIMEOUT_S)
                    # The eyes' intents: the gate takes them from this topic alone.
                    eyes = bus.EYES_INTENT_TOPIC
                    await client.subscribe(eyes, qos=bus.QOS, timeout=TIMEOUT_S)
                    self.bus_ready.set()
                    backoff.ok()
                    await _race(self._bus_in(client), self._bus_out(client))
            except aiomqtt.MqttError as exc:
                await backoff.failed(exc)

    async def _bus_in(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.retain:  # a retained state replayed on subscribing was counted once
                self.received += 1
            from_eyes = str(message.topic) == bus.EYES_INTENT_TOPIC
            event = self.gate.admit(_payload(message), from_eyes=from_eyes)
            if event is not None:
                # Unacknowledged meanwhile, so mosquitto holds the rest (its in-flight window).
                await self.gate.turn(event.type)
                self._queue_out(event)  # durable (or in RAM if the disk fails) from here on
            client._client.ack(message.mid, message.qos)

    async def _bus_out(self, client: aiomqtt.Client) -> None:
        while True:
            command = self._command_retry or await self._to_bus.get()
            self._command_retry = command  # kept for the next connection if this one fails
            # A state (the area) is retained on the bus too, so the ears have it whenever they
            # start, whether or not the outside broker is there to replay it.
            await client.publish(
                commands.bus_topic(command.name),
                command.to_json(),
                qos=bus.QOS,
                retain=command.name in commands.STATES,
                timeout=TIMEOUT_S,
            )
            self._command_retry = None

    def _queue_out(self, event: Event) -> None:
        for out in self.state.fold(event):
            for side in self.sides:
                side.outbox.put(out)
        for side in self.sides:
            side.wake.set()

    # -- the outside side ------------------------------------------------------------------

    def _outside_login(self, side: Side) -> tuple[str | None, str | None]:
        link, bus_config = self.config.link, self.config.bus
        if side.socket and (link.phones_apart or not link.username):
            # The device-local broker: there the link is the same user as on the bus.
            return bus_config.username, read_secret(bus_config.password_file, "bus.password_file")
        return link.username, read_secret(link.password_file, "link.password_file")

    def _outside_client(self, side: Side | None = None) -> aiomqtt.Client:
        side = side or self.sides[0]
        link = self.config.link
        username, password = self._outside_login(side)
        where: dict[str, Any] = (
            {"hostname": link.socket, "port": 1883, "transport": "unix"}
            if side.socket
            else {"hostname": link.home_host, "port": link.broker_port, "tls_context": self._tls}
        )
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = SESSION_EXPIRY_S
        return aiomqtt.Client(
            **where,
            identifier=f"pendant-{self.config.device_id}",
            username=username,
            password=password,
            # MQTT 5 for the subscription options of commands and the messages' expiry (see
            # the module's docstring).
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=session,
            # On the home broker too: the pendant's entities there go unavailable when the
            # pendant drops off the network (power, Wi-Fi), not only when the link stops.
            will=aiomqtt.Will(self.availability_topic, b"offline", qos=1, retain=True),
            timeout=TIMEOUT_S,
        )

    def check_outbox(self, side: Side | None = None) -> None:
        """While the broker is away the sender waits: progress, as long as its queue reads."""
        side = side or self.sides[0]
        side.outbox.peek()  # drops what expired meanwhile, retries a failed write
        if side.outbox.readable:
            side.heartbeat.beat()

    def _beat(self, side: Side) -> None:
        side.heartbeat.beat()

    async def _to_outside(self, side: Side | None = None) -> None:
        side = side or self.sides[0]
        backoff = _Backoff(side.what, tick=lambda: self.check_outbox(side), tick_s=self.check_s)
        while True:
            try:
                async with self._outside_client(side) as client:
                    self._beat(side)  # every step below is bounded by TIMEOUT_S
                    await client.publish(
                        self.availability_topic, b"online", qos=1, retain=True, timeout=TIMEOUT_S
                    )
                    self._beat(side)
                    # QoS 0 on purpose: with QoS 1 the broker would queue commands for this
                    # persistent session while the link is away and replay them on its
                    # return, and a `capture` an hour late is worse than none. Retain as
                    # published: a retained command is seen as one, and refused. No local:
                    # deleting one is not heard back as an empty command.
                    options = SubscribeOptions(qos=0, noLocal=True, retainAsPublished=True)
                    await client.subscribe(self.command_filter, options=options, timeout=TIMEOUT_S)
                    if side.home:
                        # Even when off: what an earlier config announced comes back
                        # retained, to be cleared before the new announcement (Home Assistant
                        # would refuse an entity whose unique_id an old announcement holds).
                        filter_ = discovery.own_filter(self.config)
                        await client.subscribe(filter_, qos=0, timeout=TIMEOUT_S)
                        # Also a fence: the broker answers subscriptions in order, so once
                        # this one is acknowledged every retained message of the last one
                        # has arrived.
                        await client.subscribe(discovery.STATUS_TOPIC, qos=0, timeout=TIMEOUT_S)
                        self._beat(side)
                        await self._clear_stale(client)
                        self._ha_online.clear()
                        await self._announce(client)
                    self._beat(side)
                    side.connected.set()
                    backoff.ok()
                    log.info("link: connected to the %s", side.what)
                    loops = [self._send(client, side), self._receive_commands(client, side)]
                    if side.home:
                        loops.append(self._reannounce(client))
                    try:
                        await _race(*loops)
                    except asyncio.CancelledError:
                        # A clean stop says so at once; the will covers crashes.
                        with contextlib.suppress(aiomqtt.MqttError):
                            await client.publish(
                                self.availability_topic,
                                b"offline",
                                qos=1,
                                retain=True,
                                timeout=TIMEOUT_S,
                            )
                        raise
                    finally:
                        side.connected.clear()
            except aiomqtt.MqttError as exc:
                await backoff.failed(exc)

    def _expiry_property(self, entry_event: Event) -> Properties | None:
        """MQTT 5 Message Expiry for what must not arrive late: the event's remaining life.

        The outbox never sends an expired event; this makes every broker on the way (and its
        queues for subscribers that are away) drop it once it would be late, too.
        """
        left_s = self.outbox.remaining_s(entry_event)
        if left_s is None:
            return None
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = max(int(left_s), 1)
        return properties

    async def _send(self, client: aiomqtt.Client, side: Side | None = None) -> None:
        side = side or self.sides[0]
        outbox = side.outbox
        while True:
            entry = outbox.peek()
            if entry is None:
                if outbox.readable:
                    self._beat(side)  # verified: nothing waits
                side.wake.clear()
                # The timeout retries events a failing disk left in RAM, and reads the
                # outbox again often enough to keep the watchdog fed while idle.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(side.wake.wait(), self.check_s)
                continue
            fresh = 0
            expiry = self._expiry_property(entry.event)
            for topic, payload, retain in self.messages(entry.event):
                key = (topic, entry.event.id)
                if key in side.sent:
                    if side.home:
                        self.duplicates[entry.event.type] += 1
                    continue
                await client.publish(
                    topic, payload, qos=1, retain=retain, properties=expiry, timeout=TIMEOUT_S
                )
                side.sent.add(key)  # after its PUBACK: see the module's docstring
                self._beat(side)
                fresh += 1
            outbox.done(entry)  # every message of it has its PUBACK
            self._beat(side)
            if fresh and side.home:
                self.published[entry.event.type] += 1

    async def _clear_stale(self, client: aiomqtt.Client) -> None:
        # aiomqtt has no peek; its queue is where the retained messages wait. Anything else
        # found there (a command, Home Assistant's status) goes back, in order, unawaited.
        queue = client._queue
        found: list[aiomqtt.Message] = []
        while not queue.empty():
            found.append(queue.get_nowait())
        stale = []
        for message in found:
            topic = str(message.topic)
            if topic.startswith(discovery.PREFIX + "/") and topic != discovery.STATUS_TOPIC:
                if message.retain and discovery.is_stale(self.discovery, topic, _payload(message)):
                    stale.append(topic)
            else:
                queue.put_nowait(message)
        for topic in stale:
            log.info("link: removing the stale Home Assistant announcement %s", topic)
            await client.publish(topic, b"", qos=1, retain=True, timeout=TIMEOUT_S)

    async def _announce(self, client: aiomqtt.Client) -> None:
        # Built from the config, not from the bus: nothing here went through the gate
        # because nothing here came from a component.
        for topic, payload in self.discovery:
            await client.publish(topic, payload, qos=1, retain=True, timeout=TIMEOUT_S)
        self.announced += 1

    async def _reannounce(self, client: aiomqtt.Client) -> None:
        while True:
            await self._ha_online.wait()
            await asyncio.sleep(random.uniform(0, discovery.ANNOUNCE_DELAY_S))
            # Cleared after the delay: several `online`s within it make one announcement.
            self._ha_online.clear()
            await self._announce(client)

    async def _receive_commands(self, client: aiomqtt.Client, side: Side | None = None) -> None:
        side = side or self.sides[0]
        async for message in client.messages:
            if str(message.topic) == discovery.STATUS_TOPIC:
                # A retained `online` is old news: discovery already went out on connect.
                if _payload(message) == b"online" and not message.retain:
                    self._ha_online.set()
                continue
            if str(message.topic).startswith(discovery.PREFIX + "/"):
                continue  # our own announcements, echoed back by the broker
            try:
                clear = self.on_command(
                    str(message.topic),
                    _payload(message),
                    message.retain,
                    from_home=side.commands_from_home,
                )
            except Exception:
                # Outside input must never stop the link; the fuzz tests say this is unreachable.
                self.commands["failed"] += 1
                log.exception("link: a command could not be handled")
                continue
            if clear:
                # Deleted, so the broker neither stores it nor replays it on every reconnect.
                await client.publish(str(message.topic), b"", qos=1, retain=True, timeout=TIMEOUT_S)

    def on_command(
        self, topic: str, payload: bytes, retain: bool = False, from_home: bool = False
    ) -> bool:
        """Check and forward one command; True when it is a retained one to delete.

        `from_home`: it came from the home broker, where phones are not (link.host beside
        link.socket), so an unmute or a capture is refused.
        """
        name = topic.rsplit("/", 1)[-1]
        if retain and name not in commands.STATES:
            # A retained command would run again on every reconnect; a state (the area) is
            # meant to be retained, and setting it again changes nothing.
            if not payload:
                return False  # someone deleting a retained command: nothing to run or report
            self.commands["retained"] += 1
            log.warning("link: refused a retained command %r", commands.excerpt(name))
            self._report(commands.retained_error(name, self.config.device_id))
            return True
        result = commands.parse_command(
            name, payload, self.config.device_id, areas=self.config.home.areas
        )
        if isinstance(result, Command) and from_home:
            # From the home broker: never an unmute or a capture.
            refusal = commands.home_refusal(result)
            if refusal is not None:
                self.commands["refused"] += 1
                self._report(Error(device_id=result.device_id, command=name, reason=refusal))
                return False
        if isinstance(result, Command):
            try:
                self._to_bus.put_nowait(result)
            except asyncio.QueueFull:
                self.commands["overflow"] += 1
                result = Error(device_id=result.device_id, command=name, reason="busy: try again")
            else:
                self.commands["forwarded"] += 1
                return False
        else:
            self.commands["rejected"] += 1
        self._report(result)
        return False

    def _report(self, error: Error) -> None:
        """Publish `error`, within the rate limit (see the module's docstring)."""
        if not self.error_bucket.take():
            if self._suppressed_since_report == 0:
                log.warning(
                    "link: over %d error events; reporting one per %g s, counting the rest",
                    ERROR_BURST,
                    ERROR_EVERY_S,
                )
            self._suppressed_since_report += 1
            self.errors_suppressed += 1
            return
        if self._suppressed_since_report:
            log.warning("link: %d error events were not reported", self._suppressed_since_report)
            self._suppressed_since_report = 0
        log.warning("link: refused a command: %s", error.reason)
        # The link's own events leave through the same gate as everyone else's.
        event = self.gate.admit(error.to_json())
        if event is not None:
            self._queue_out(event)


async def serve(config: Config) -> int:
    """Run the link until SIGINT or SIGTERM, then say `offline` and stop."""
    task = asyncio.create_task(Link(config).run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return 0


def main(argv: list[str] | None = None) -> int:
    from pendant.logs import setup_logging

    parser = argparse.ArgumentParser(
        prog="python -m pendant.link", description="Run only the link (the pendant-link service)."
    )
    parser.add_argument(
        "--config", type=Path, help="TOML config (default /etc/pendant/pendant.toml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        return asyncio.run(serve(load_config(args.config)))
    except PendantError as exc:
        print(f"pendant-link: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
