"""The link: the only component that talks to the outside broker.

Bus → outside: it reads events off the device-local bus, passes each through the schema gate
(`pendant.link.gate`), writes what passes to the durable outbox (`pendant.link.outbox`) and only
then
acknowledges it on the bus. A sender per outside broker (`pendant.link.sender`: the one queue
towards home automation, the sent-id window, the watchdog's beats) publishes from its queue,
in order, QoS 1, and deletes an event only after the broker's PUBACK. Both sessions are
persistent (clean_session false, client ids the same on every start and private to the login:
`bus.private_client_id`), so events published on the bus while the link restarts wait for it
there.

Outside → bus: commands from phones and the home broker (`pendant.link.command_errors`: who may send
what, retained commands, rate-limited `error` events) go to the bus as
`pendant-bus/cmd/<name>`. A `say` also comes back out as the link's own `say` event, where the
phones are (they cannot read commands): the phones speak it, the body buzzes for the command.
The words of a `sentences` command join the gate's closed set as it goes (`Gate.phone_sent`),
kept beside the outbox (`PHONE_SENTENCES_FILE`) for a restarted link: the gate learns them
from what the phone sent, never from the ears' answer, which it passes only with sets the
phone sent and its refusals and warnings in the ears' own forms (`pendant.link.gate_sentences`).

Every id that leaves is the link's: the gate re-issues each event's `id` and `session_id` as a
keyed hash of the sender's (`pendant.link.gate.reissue`, the key `ID_KEY_FILE` beside the outbox),
before the outbox, so the outbox, the senders' sent windows, the Hermes mirror and Home
Assistant's events all see the link's ids, the same across a restart of the link.

The connections themselves (`pendant.link.outside`): TLS to `link.host`, the logins, MQTT 5
sessions, the last will, the reconnect loops. Availability is a retained `online`, with a
retained `offline` as last will, on each broker; the bus side and each outside side have their
own reconnect loops, so an outage of one never blocks another. Where the link stands with
the home broker (or the one outside broker) goes on the bus, retained, as `link_state`, for
the body's LED: `connecting` from the start, then `connected`, or why it is not
(`link_outside.outside_state_of`: `no_network` or `no_broker`). It stays on the bus: the gate
lets no `link_state` out, and the link does not read it back.

Home Assistant discovery (`pendant.link.discovery`) is published retained on the home broker on
every connect, again a few random seconds after Home Assistant announces `online`, and again
at once when the intents it can send change (the phone sent sentences with a new intent: the
event entity must list it, or Home Assistant drops its events); intents also go out as Home
Assistant events on `pendant/<id>/event`.

`pendant service link` runs the link alone, as the `pendant-link` unit does (`component`).
It is ready once subscribed on the bus: an event published there from then on is relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from pathlib import Path

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from pendant.core import bus
from pendant.core import systemd as notify
from pendant.core.config import Config
from pendant.core.events import (
    Answer,
    Ask,
    Battery,
    Button,
    Command,
    Error,
    Event,
    Intent,
    LinkState,
    NotRecognized,
    OutsideState,
    Say,
    Scene,
    Sentences,
    Status,
    Transcript,
    Voices,
    parse_event,
)
from pendant.core.supervise import Ready, first_to_end, unobserved
from pendant.core.vocabulary import PhoneSentences, Vocabulary
from pendant.link import command_errors as link_commands
from pendant.link import commands, discovery, hermes
from pendant.link import outside as link_outside
from pendant.link.ask import Asker, target_of
from pendant.link.ask_reply import REFUSED_CALL
from pendant.link.command_errors import ERROR_BURST, ERROR_EVERY_S, ErrorReports
from pendant.link.gate import BUS_NAMES, Gate, id_key
from pendant.link.outbox import Outbox
from pendant.link.outside import (
    TIMEOUT_S,
    Backoff,
    outside_state_of,
    payload_of,
    tls_context,
)
from pendant.link.ratelimit import TokenBucket
from pendant.link.sender import Message, Side
from pendant.link.status import DeviceState

log = logging.getLogger(__name__)

__all__ = [
    "ERROR_BURST",
    "ERROR_EVERY_S",
    "Link",
    "TokenBucket",
    "tls_context",
]

COMMAND_QUEUE_MAX = 100
PHONE_SENTENCES_FILE = "phone_sentences.json"
ID_KEY_FILE = "id_key"
BUS_CLIENT_ID = "pendant-link"
CALLS = frozenset({"say", "buzz"})
ASKING = ("ask", "button")
"""Bus types the link reads when `escalate.enabled` (`Link._asked`): never passed on."""
ASKING_TOPICS = frozenset(bus.topic(name) for name in ASKING)
CALL_BURST = 3
CALL_EVERY_S = 5.0
"""Calls on the wearer (`say`, `buzz`): three at once, then one each 5 s; more are refused."""
# Lost, or the pendant was updated from before the link kept a record.
UNKNOWN_SETS = "your own sentences are not heard: the link has no record of them, send them again"


class Link:
    """The link between the device's bus and the outside brokers.

    A component (`pendant.core.supervise.Component`): ready once subscribed on the bus. A bus
    it cannot reach is retried, not fatal; but at start, `ready_within_s` bounds the wait, so
    a link that cannot start (a bad password file, say) says so rather than wait for ever.
    """

    name = "link"
    ready_within_s = 60.0

    def __init__(self, config: Config) -> None:
        self.config = config
        link = config.link
        # The phone's sentences, kept beside the outbox (in RAM only when the outbox is).
        beside = Path(link.outbox_path) if link.outbox_path else None
        kept = beside.with_name(PHONE_SENTENCES_FILE) if beside else None
        self.gate = Gate(
            Vocabulary.of(config),
            config.device_id,
            link.gate_burst,
            link.gate_every_s,
            phone=PhoneSentences(kept),
            # The ids that leave are the link's, under a key kept beside the outbox: the
            # outbox stores them, so a restart sends its rows with the ids they had.
            id_key=id_key(beside.with_name(ID_KEY_FILE) if beside else None),
        )
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
        self.published = primary.published
        """Events sent to the home broker (or the one outside broker), by type."""
        self.sent = primary.sent
        """(topic, event id) of the messages already sent there (`pendant.link.sender`)."""
        self.duplicates = primary.duplicates
        """Messages not sent there again, by event type."""
        self.commands: Counter[str] = Counter()
        """forwarded, rejected, refused (from the home broker), retained (refused and deleted),
        overflow, failed."""
        self.errors = ErrorReports(self._send_own)
        self.calls = TokenBucket(CALL_BURST, CALL_EVERY_S)
        """`say` and `buzz`, from anyone: a flood must not buzz the wearer or talk for ever."""
        self.received = 0
        """Events read off the bus as they were published, passed or dropped."""
        self.poisoned = 0
        """Bus messages dropped because handling them raised (none should)."""
        self.state = DeviceState(config.device_id)
        self.connected = primary.connected
        """Connected to the home broker (or the one outside broker)."""
        self.outside_state: OutsideState = "connecting"
        """Where the link stands with the home broker (or the one outside broker), for the
        bus's `link_state`."""
        self._state_changed = asyncio.Event()
        self._to_bus: asyncio.Queue[Command] = asyncio.Queue(COMMAND_QUEUE_MAX)
        self._command_retry: Command | None = None
        self._told_unknown_sets = False
        base = f"{config.link.topic_prefix}/{config.device_id}"
        self.base_topic = base
        self.availability_topic = f"{base}/availability"
        self.command_filter = f"{base}/cmd/+"
        self.discovery = self._discovery()
        """What this link announces to Home Assistant, retained; [] when discovery is off."""
        self.announced = 0
        """Times the discovery messages went out."""
        self._announce_due = asyncio.Event()
        """The home side is to announce again: Home Assistant came online, or `discovery`
        changed."""
        self._ha_online = False
        """Home Assistant came online since the last announcement: spread out (`_reannounce`)."""
        self._tls = tls_context(config.link)
        self.heartbeat = notify.Heartbeats(*(side.heartbeat for side in self.sides))
        """Every side's sender, as old as the stalest (`pendant.link.sender`, the watchdog)."""
        self.asker = Asker(config, target_of(config)) if config.escalate.enabled else None
        """Asks a bigger model what the closed set cannot hear (`pendant.link.ask`); None
        unless `escalate.enabled`."""
        self._asking: set[asyncio.Task[None]] = set()

    @property
    def check_s(self) -> float:
        """How often an idle or waiting sender reads its queue again (and so beats)."""
        return self.sides[0].check_s

    @check_s.setter
    def check_s(self, value: float) -> None:
        for side in self.sides:
            side.check_s = value

    @property
    def error_bucket(self) -> TokenBucket:
        """The rate limit of error events (`pendant.link.command_errors`)."""
        return self.errors.bucket

    @error_bucket.setter
    def error_bucket(self, bucket: TokenBucket) -> None:
        self.errors.bucket = bucket

    @property
    def errors_suppressed(self) -> int:
        """Error events not published because of the rate limit."""
        return self.errors.suppressed

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
            case Voices():
                out.append((f"{base}/voices", event.to_json(), True))
            case Say():
                out.append((f"{base}/say", event.to_json(), False))
            case Answer():
                out.append((f"{base}/answer", event.to_json(), False))
                if self.config.link.discovery != "off":
                    out.append((*discovery.answer_event_message(self.config, event), False))
                if mirror and event.text:  # Hermes' text-to-speech has nothing to say
                    out.append((*hermes.say_message(event), False))
        return out

    async def run(self, ready: Ready = unobserved) -> None:
        """Until cancelled; `ready` once subscribed on the bus (the outside brokers may still
        be out of reach: their events wait in the outbox)."""
        try:
            await first_to_end(
                self._from_bus(ready), *(self._to_outside(side) for side in self.sides)
            )
        finally:
            for task in self._asking:
                task.cancel()
            for side in self.sides:
                side.outbox.close()

    # -- the bus side ----------------------------------------------------------------------

    async def _from_bus(self, ready: Ready) -> None:
        backoff = Backoff("bus")
        said_ready = False
        while True:
            # A link that dies (crash, OOM kill) must not leave "connected" for the body's
            # LED: the broker then says "connecting" for it until a link is back.
            dead = LinkState(device_id=self.config.device_id, state="connecting")
            client = bus.bus_client(self.config.bus, BUS_CLIENT_ID, persistent=True, will=dead)
            # Acknowledge a bus message only once the outbox has it, so a link killed in
            # between gets it again from its session. aiomqtt does not expose paho's manual
            # acks; its paho client does.
            paho = client._client
            paho.manual_ack_set(True)
            try:
                async with client:
                    # Only what may leave; internal events (button, command) are not the link's,
                    # and the link's own (`say`) never come from the bus.
                    for name in sorted(BUS_NAMES):
                        await client.subscribe(bus.topic(name), qos=bus.QOS, timeout=TIMEOUT_S)
                    # The eyes' intents: the gate takes them from this topic alone.
                    eyes = bus.EYES_INTENT_TOPIC
                    await client.subscribe(eyes, qos=bus.QOS, timeout=TIMEOUT_S)
                    if self.asker is not None:
                        # What the wearer asks, and the presses that say they are asking.
                        for name in ASKING:
                            await client.subscribe(bus.topic(name), qos=bus.QOS, timeout=TIMEOUT_S)
                    if not said_ready:  # once: a reconnect is no new start
                        said_ready = True
                        ready("relaying")
                    backoff.ok()
                    await first_to_end(
                        self._bus_in(client), self._bus_out(client), self._bus_state(client)
                    )
            except aiomqtt.MqttError as exc:
                await backoff.failed(exc)

    async def _bus_in(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.retain:  # a retained state replayed on subscribing was counted once
                self.received += 1
            try:
                if str(message.topic) in ASKING_TOPICS:
                    # Retained, it is no press or question of now (nobody asked for it).
                    if not message.retain:
                        self._asked(payload_of(message), str(message.topic))
                    client._client.ack(message.mid, message.qos)
                    continue
                # The topic says who spoke (the broker's ACL): the gate holds it to its type.
                event = self.gate.admit(payload_of(message), str(message.topic))
                self._report_unknown_sets()
                if event is not None:
                    # Unacknowledged meanwhile, so mosquitto holds the rest (its in-flight
                    # window).
                    await self.gate.turn(event.type)
                    self._queue_out(event)  # durable (or in RAM if the disk fails) from here
            except Exception:
                # A message the link cannot handle is dropped, and acknowledged all the same:
                # unacknowledged, the persistent session would hand it to every restart.
                self.poisoned += 1
                log.exception("link: dropped a bus message it could not handle")
            client._client.ack(message.mid, message.qos)

    async def _bus_out(self, client: aiomqtt.Client) -> None:
        while True:
            command = self._command_retry or await self._to_bus.get()
            self._command_retry = command  # kept for the next connection if this one fails
            # A state (the area) is retained on the bus too, so the ears have it whenever they
            # start, whether or not the outside broker is there to replay it.
            await client.publish(
                bus.topic_of(command),
                command.to_json(),
                qos=bus.QOS,
                retain=command.name in commands.STATES,
                timeout=TIMEOUT_S,
            )
            self._command_retry = None

    async def _bus_state(self, client: aiomqtt.Client) -> None:
        # On every bus connection, then on every change: retained, so the body learns it
        # whenever it starts, and the first one replaces what the last boot left there.
        while True:
            self._state_changed.clear()
            event = LinkState(device_id=self.config.device_id, state=self.outside_state)
            await client.publish(
                bus.topic_of(event), event.to_json(), qos=bus.QOS, retain=True, timeout=TIMEOUT_S
            )
            await self._state_changed.wait()

    def _set_outside_state(self, state: OutsideState) -> None:
        if state != self.outside_state:
            self.outside_state = state
            self._state_changed.set()

    def _queue_out(self, event: Event) -> None:
        if self.asker is not None and isinstance(event, Scene):
            self.asker.saw(event)
        sides = self._sides_for(event)
        for out in self.state.fold(event):
            for side in sides:
                side.outbox.put(out)
        for side in sides:
            side.wake.set()

    def _sides_for(self, event: Event) -> list[Side]:
        """Where `event` goes: everywhere, but a `say` and the enrolled voices only where the
        phones are (a `say` is for them to speak, and whoever sent the command needs no echo of
        it; the names of a household's voices are for the phones that enrol them, not for every
        client of the home broker)."""
        if isinstance(event, Say | Voices) and len(self.sides) > 1:
            return [side for side in self.sides if not side.home]
        return self.sides

    # -- the outside side ------------------------------------------------------------------

    async def _to_outside(self, side: Side | None = None) -> None:
        side = side or self.sides[0]
        backoff = Backoff(side.what, tick=side.check, tick_s=side.check_s)
        beat = side.heartbeat.beat
        while True:
            try:
                client = link_outside.client(
                    self.config,
                    over_socket=side.socket,
                    tls=self._tls,
                    will_topic=self.availability_topic,
                )
                async with client:
                    beat()  # every step below is bounded by TIMEOUT_S
                    await client.publish(
                        self.availability_topic, b"online", qos=1, retain=True, timeout=TIMEOUT_S
                    )
                    beat()
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
                        beat()
                        await self._clear_stale(client)
                        # What is due is this announcement; a change while it goes out sets
                        # it again.
                        self._announce_due.clear()
                        self._ha_online = False
                        await self._announce(client)
                    beat()
                    side.connected.set()
                    if side is self.sides[0]:
                        self._set_outside_state("connected")
                    backoff.ok()
                    log.info("link: connected to the %s", side.what)
                    loops = [self._send(client, side), self._receive_commands(client, side)]
                    if side.home:
                        loops.append(self._reannounce(client))
                    try:
                        await first_to_end(*loops)
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
                if side is self.sides[0]:
                    self._set_outside_state(outside_state_of(exc))
                await backoff.failed(exc)

    async def _send(self, client: aiomqtt.Client, side: Side | None = None) -> None:
        await (side or self.sides[0]).send(client, self.messages)

    # -- Home Assistant discovery ------------------------------------------------------------

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
                if message.retain and discovery.is_stale(
                    self.discovery, topic, payload_of(message)
                ):
                    stale.append(topic)
            else:
                queue.put_nowait(message)
        for topic in stale:
            log.info("link: removing the stale Home Assistant announcement %s", topic)
            await client.publish(topic, b"", qos=1, retain=True, timeout=TIMEOUT_S)

    async def _announce(self, client: aiomqtt.Client) -> None:
        # Built from the config and the intent names the phone sent (its checked command),
        # not from the bus: nothing here went through the gate because nothing here came
        # from a component.
        for topic, payload in self.discovery:
            await client.publish(topic, payload, qos=1, retain=True, timeout=TIMEOUT_S)
        self.announced += 1

    async def _reannounce(self, client: aiomqtt.Client) -> None:
        while True:
            await self._announce_due.wait()
            if self._ha_online:
                # A restarted Home Assistant hears from every device at once: spread out.
                await asyncio.sleep(random.uniform(0, discovery.ANNOUNCE_DELAY_S))
            # Cleared after the delay: several `online`s within it make one announcement.
            self._announce_due.clear()
            self._ha_online = False
            await self._announce(client)

    def _home_assistant_online(self) -> None:
        self._ha_online = True
        self._announce_due.set()

    def _discovery(self) -> list[discovery.Message]:
        # Every intent the gate lets out, the phone's included (`discovery.event_types`).
        return discovery.messages(
            self.config, discovery.event_types(self.config, self.gate.phone.sent)
        )

    def _update_discovery(self) -> None:
        """Announce again if what would be announced changed (the gate learnt intents)."""
        current = self._discovery()
        if current != self.discovery:
            log.info("link: the intents it can send changed; announcing them to Home Assistant")
            self.discovery = current
            self._announce_due.set()

    # -- commands from outside ---------------------------------------------------------------

    async def _receive_commands(self, client: aiomqtt.Client, side: Side | None = None) -> None:
        side = side or self.sides[0]
        from_home = side.commands_from_home

        def handle(topic: str, payload: bytes, retain: bool) -> bool:
            return self.on_command(topic, payload, retain, from_home=from_home)

        await link_commands.receive(client, handle, self._home_assistant_online, self.commands)

    def on_command(
        self, topic: str, payload: bytes, retain: bool = False, from_home: bool = False
    ) -> bool:
        """Check and forward one command; True when it is a retained one to delete.

        `from_home`: it came from the home broker (`link_commands.judge`).
        """
        verdict = link_commands.judge(self.config, topic, payload, retain, from_home)
        if verdict.command is not None and verdict.command.name in CALLS and not self.calls.take():
            self.commands["rate_limited"] += 1
            name = verdict.command.name
            self.errors.report(
                Error(device_id=self.config.device_id, command=name, reason="busy: try again")
            )
            return False
        if verdict.command is not None:
            try:
                self._to_bus.put_nowait(verdict.command)
            except asyncio.QueueFull:
                self.commands["overflow"] += 1
                device_id = verdict.command.device_id
                busy = Error(device_id=device_id, command=verdict.name, reason="busy: try again")
                self.errors.report(busy)
                return False
            if verdict.command.sentences is not None:
                # The gate learns the phone's words from what the phone sent, never from the
                # ears' answer (`pendant.link.gate`).
                self.gate.phone_sent(verdict.command.sentences)
                self._update_discovery()
            if verdict.command.name == "say":
                self._pass_say_on(verdict.command)
            if verdict.command.name == "area" and self.asker is not None:
                # The room sent with a question: the link's own record, not the ears' word.
                self.asker.area = verdict.command.area or self.config.home.default_area
        if verdict.outcome:
            self.commands[verdict.outcome] += 1
        if verdict.error is not None:
            self.errors.report(verdict.error)
        return verdict.clear

    def _report_unknown_sets(self) -> None:
        """Once a run: tell the phone that the wearer's own intents are dropped until it sends
        its sentences again, rather than drop them in silence."""
        if self.gate.unknown_sets and not self._told_unknown_sets:
            self._told_unknown_sets = True
            log.error("link: %s", UNKNOWN_SETS)
            self._send_own(
                Error(device_id=self.config.device_id, command="sentences", reason=UNKNOWN_SETS)
            )

    def _pass_say_on(self, command: Command) -> None:
        """The phones speak what a `say` command carried: the link's own `say` event, through
        the gate like everything else (`pendant.link.gate`), as the bus never carries one."""
        assert command.text is not None  # the command was checked: a say has its text
        say = Say(device_id=command.device_id, text=command.text)
        event = self.gate.admit_own(say.to_json())
        if event is not None:
            self._queue_out(event)

    def _asked(self, payload: bytes, topic: str) -> None:
        """A press of the button, or a question from the ears (`pendant.link.ask`)."""
        if self.asker is None:
            return
        try:
            event = parse_event(payload)
        except ValueError as exc:
            log.warning("link: ignored a bad event on %s: %s", topic, exc)
            return
        if not bus.on_own_topic(event, topic):
            return
        if isinstance(event, Button):
            self.asker.button(event)
        elif (
            isinstance(event, Ask)
            and event.device_id == self.config.device_id
            and self.asker.taken(event)
        ):
            task = asyncio.create_task(self._ask(event))
            self._asking.add(task)
            task.add_done_callback(self._asking.discard)

    async def _ask(self, ask: Ask) -> None:
        """Asks, and sends the answer (and the intent a tool call made) out through the gate."""
        assert self.asker is not None
        answer, intent = await self.asker.answer(ask)
        if intent is not None:
            passed = self.gate.admit_own(intent.to_json())
            if passed is None:
                # Not done after all: the answer must not say it was.
                answer = answer.model_copy(update={"outcome": "refused", "text": REFUSED_CALL})
            else:
                await self.gate.turn(passed.type)
                self._queue_out(passed)
        passed = self.gate.admit_own(answer.to_json())
        if passed is None:
            # Words the gate would not let out (encoded bytes, say): the phone still hears
            # that there was no answer it could pass on.
            empty = answer.model_copy(update={"text": "", "outcome": "failed"})
            passed = self.gate.admit_own(empty.to_json())
        if passed is not None:
            await self.gate.turn(passed.type)
            self._queue_out(passed)
        # The wearer feels the outcome: the body buzzes (and its LED stops saying "asking").
        good = answer.outcome in ("answered", "acted")
        buzz = Command(
            device_id=self.config.device_id,
            name="buzz",
            pattern="understood" if good else "not_understood",
            session_id=ask.session_id,  # ends this question's "asking", not a later one's
        )
        with contextlib.suppress(asyncio.QueueFull):  # a flood of commands: the answer went
            self._to_bus.put_nowait(buzz)

    def _send_own(self, error: Error) -> None:
        # The link's own events leave through the same gate as everyone else's, but not
        # through the bus: they came on no topic.
        event = self.gate.admit_own(error.to_json())
        if event is not None:
            self._queue_out(event)


def component(config: Config, config_path: Path | None) -> Link:
    """The link as its unit runs it (`pendant.app.services`)."""
    link = Link(config)
    # The watchdog is fed by the senders' progress, not by the loop turning (see
    # pendant.link.sender): an idle sender reads its queue again well within the interval.
    interval_s = notify.watchdog_interval_s()
    if interval_s:
        link.check_s = min(link.check_s, interval_s / 4)
    return link
