"""The link's senders: one per outside broker, each with its queue, its sent window, its beat.

One queue: on the pendant the link talks to two brokers. The home broker (`link.host`: Home
Assistant, Node-RED) gets the events from the durable outbox (`pendant.link.outbox`), each publish
carrying an MQTT 5 Message Expiry Interval (what is left of `link.intent_expiry_s`), so the
outbox is the one queue towards home automation: nothing is acknowledged to the ears that only
a broker's RAM holds, and nothing arrives later than `link.intent_expiry_s`, wherever it
waited. The device-local mosquitto (`link.socket`), where paired phones are, gets the same
events from a second queue, in RAM: phones read them live, and a link restarted in between
costs a phone an event, never the home an intent. With only one of them configured it is the
one outside broker. (There used to be a mosquitto bridge between the two: it acknowledged at
once, queued with no expiry and lost its queue to a power cut; issue 14.)

A sender publishes from its queue, in order, QoS 1, and deletes an event only after every
message it became has its PUBACK. Each outside message is sent once per event id: a sender
remembers the last `SENT_WINDOW` (topic, event id) pairs the broker acknowledged and skips them
if they come round again, so Home Assistant's event entity, which does not drop duplicates by
`id`, sees an intent once even when the bus delivers it twice (QoS 1), and an entry sent again
after a reconnect repeats only the message whose PUBACK was missing. That one message may
arrive twice: the link cannot tell a lost PUBLISH from a lost PUBACK, and losing an accepted
intent is worse than a duplicate. The window is in RAM: a link restarted between a PUBACK and
the outbox's delete may still send one again.

The watchdog (`pendant-link`'s WatchdogSec=) is fed by the senders' progress, not by the loop
turning: a loop that turns while a sender is stuck (an outbox file that no longer reads, a
sender that never comes back from a wait) must get the link restarted. Each sender has its own
beat, the home broker's and the phones' alike, and the link's heartbeat is as old as the older
of them, so either one stalled stops the pings (the phones' sender stuck on a broker that no
longer answers would otherwise go unnoticed while the home side idles). A sender's beat is
beaten when, and only when, it does one of these:
- gets a PUBACK (or a SUBACK while connecting): every such wait is bounded by `TIMEOUT_S`;
- reads its queue and finds nothing waiting (`Outbox.readable`: "cannot read" is not
  "empty"), at least every `check_s` while idle;
- waits for an outside broker that is away: a refused or failed connection, then the
  backoff, during which it reads its queue every `check_s`. A broker that is down is not the
  link's fault, so the link is not restarted over it (a restart would not bring the broker
  back, and would burn the unit's start limit); a link whose outbox stops reading while it
  waits is.
A connection attempt is bounded too (TIMEOUT_S), so a beat is never more than about
`TIMEOUT_S` + `RECONNECT_MAX_S` away while the link is healthy; WatchdogSec= must be above it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, OrderedDict
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pendant.core.events import Event
from pendant.core.systemd import Heartbeat
from pendant.link.outbox import RETRY_S, Outbox
from pendant.link.outside import TIMEOUT_S

# (topic, event id) pairs remembered as sent: far more than a reconnect resends (the head of
# the outbox) or the bus redelivers (what was in flight), a few tens of KB.
SENT_WINDOW = 1024

Message = tuple[str, bytes, bool]
"""(topic, payload, retain): one message an event becomes outside."""


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
        """Remembers `key`, a (topic, event id) pair, as the newest, forgetting the oldest beyond
        `size`; a key already there becomes the newest again."""
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


def expiry_property(outbox: Outbox, event: Event) -> Properties | None:
    """MQTT 5 Message Expiry for what must not arrive late: the event's remaining life.

    The outbox never sends an expired event; this makes every broker on the way (and its
    queues for subscribers that are away) drop it once it would be late, too.
    """
    left_s = outbox.remaining_s(event)
    if left_s is None:
        return None
    properties = Properties(PacketTypes.PUBLISH)
    properties.MessageExpiryInterval = max(int(left_s), 1)
    return properties


class Side:
    """One broker the link publishes to, with its own queue, sent window, connection and beat
    (see the module's docstring)."""

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
        """Beaten only by this side's progress."""
        self.check_s = RETRY_S
        """How often an idle or waiting sender reads its queue again (and so beats)."""
        self.published: Counter[str] = Counter()
        """Events whose messages went out, by type (not counting those only skipped)."""
        self.duplicates: Counter[str] = Counter()
        """Outside messages not sent again, by event type."""

    def check(self) -> None:
        """While the broker is away the sender waits: progress, as long as its queue reads."""
        self.outbox.peek()  # drops what expired meanwhile, retries a failed write
        if self.outbox.readable:
            self.heartbeat.beat()

    async def send(
        self, client: aiomqtt.Client, messages: Callable[[Event], list[Message]]
    ) -> None:
        """Publish the queue's events, as `messages` makes them, until the connection fails."""
        outbox = self.outbox
        while True:
            entry = outbox.peek()
            if entry is None:
                if outbox.readable:
                    self.heartbeat.beat()  # verified: nothing waits
                self.wake.clear()
                # The timeout retries events a failing disk left in RAM, and reads the
                # outbox again often enough to keep the watchdog fed while idle.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.check_s):
                        await self.wake.wait()
                continue
            fresh = 0
            expiry = expiry_property(outbox, entry.event)
            for topic, payload, retain in messages(entry.event):
                key = (topic, entry.event.id)
                if key in self.sent:
                    self.duplicates[entry.event.type] += 1
                    continue
                await client.publish(
                    topic, payload, qos=1, retain=retain, properties=expiry, timeout=TIMEOUT_S
                )
                self.sent.add(key)  # after its PUBACK: see the module's docstring
                self.heartbeat.beat()
                fresh += 1
            outbox.done(entry)  # every message of it has its PUBACK
            self.heartbeat.beat()
            if fresh:
                self.published[entry.event.type] += 1
