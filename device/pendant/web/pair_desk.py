"""The pairing desk: `GET /pair`, the door of the pairing window for a phone on the home's network.

With `--bus-socket` the server
logs in to the device-local bus as user `web` (`--bus-password-file`), the only reader of the
pairing service's retained offer (`pendant-bus/pairing_offer`, see `pendant.pairing.service`).
`/pair` answers local addresses only (private, link-local, loopback: a phone on the home's
network; 403 otherwise), at most `PAIR_BURST` requests at once per address, then one every
`PAIR_EVERY_S` (429). While an offer is live, a `GET /pair` hands out nothing at first: it
reports the phone's request to the pairing service (`pendant-bus/pairing_request`, one per
address, named by a random id, with a code from 1 to `PAIR_CODES` that no other address of
this offer has) and answers a page that shows that phone alone its code ("press the button 3
times"), and comes back every `PAIR_POLL_S` with its own random token (`/pair?r=...`). At most
`PAIR_CODES` addresses ask at once; more are told so, and report nothing. Only once the wearer
pressed that phone's code (the offer comes again naming its request) does the phone's next
`GET /pair` take the offer: the answer is a page
that sends the phone on to `/#u=...&p=...` (same origin, so whatever name the phone used for
the pendant works), and the server publishes `pendant-bus/pairing_taken`, so the offer is
single-use: it is
marked taken in the server before anything else (the broker may replay it after a reconnect,
and it is never handed out again), and the report is sent at QoS 1 until the broker acknowledges
it, again after each reconnect and whenever the offer shows up again (the pairing service
publishes it anew after an outage, and takes a repeated report once). The
login travels only in that page's body and then in the URL fragment, which browsers never
send; never in a header, a query string or a log line, and the page is `no-store`. Otherwise
(no window open, already taken, expired, no bus) `/pair` says how to open the window. `HEAD
/pair` never takes an offer. Without `--bus-socket` there is no bus and no offer.

The connections of the addresses that ask to pair are the last ones evicted, so that a flood
cannot cut the phone off while it waits for the wearer's presses.

The web server (`pendant.web.server`) routes `/pair` here; this module knows the offer, the
asking phones and their codes, and the bus; the server knows HTTP.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import ipaddress
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass

import aiomqtt

from pendant.core import mqtt, wire
from pendant.core.supervise import first_to_end

log = logging.getLogger(__name__)

PAIR_PATH = "/pair"
# What the "closed" page tells the wearer (body.pairing_hold_s, by default).
PAIRING_HOLD_S = 8
BUS_USER = "web"
OFFER_TOPIC = wire.topic("pairing_offer")
TAKEN_TOPIC = wire.topic("pairing_taken")
REQUEST_TOPIC = wire.topic("pairing_request")
# /pair per source address: a burst, then one request every PAIR_EVERY_S (the waiting page
# comes back every PAIR_POLL_S); at most PAIR_SOURCES addresses remembered.
PAIR_BURST = 5
PAIR_EVERY_S = 1.0
PAIR_POLL_S = 2
PAIR_SOURCES = 256
# Codes 1..PAIR_CODES, one per asking address (pendant.core.events.PAIRING_CODES: the pairing
# service refuses more, or two alike). Few, so that a code is a handful of presses.
PAIR_CODES = 4
BUS_RETRY_S = (1.0, 2.0, 5.0, 10.0)


# --- the pairing offer ----------------------------------------------------------------------


@dataclass(frozen=True)
class Offer:
    """The pairing service's offer: a one-time account's login, as the link's fragment."""

    device_id: str
    user: str
    fragment: str
    expires_ms: int
    # The request the wearer accepted (see `PairingDesk.ask`); None: nobody's yet.
    requester: str | None = None

    def live(self) -> bool:
        """Whether it has not expired yet."""
        return wire.now_ms() < self.expires_ms


@dataclass(frozen=True)
class Ask:
    """One address's request for the live offer: its id on the bus, its token on the page,
    and its code (how many presses accept it), shown on its page alone."""

    requester: str
    token: str
    code: int


@dataclass(frozen=True)
class PairAnswer:
    """What `/pair` answers a phone: the offer (accepted: its login), or the request it waits
    with, or `full` (as many phones ask as there are codes)."""

    offer: Offer | None = None
    waiting: Ask | None = None
    full: bool = False


class RateLimit:
    """A token bucket per source address: `burst` at once, then one every `every_s`.

    At most `sources` addresses are remembered (the longest idle forgotten first): a
    forgotten address starts with a full bucket, which costs at most `burst` more requests.
    """

    def __init__(
        self, burst: int = PAIR_BURST, every_s: float = PAIR_EVERY_S, sources: int = PAIR_SOURCES
    ) -> None:
        self.burst, self.every_s, self.sources = burst, every_s, sources
        self._buckets: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)

    def allow(self, source: str, now_s: float | None = None) -> bool:
        """Whether `source` may ask now (taking a token if so); remembers the newest addresses."""
        now_s = time.monotonic() if now_s is None else now_s
        tokens, at_s = self._buckets.pop(source, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - at_s) / self.every_s)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now_s)  # now the newest
        while len(self._buckets) > self.sources:
            del self._buckets[next(iter(self._buckets))]
        return allowed


# A home network's own ranges. Not `is_private`: it also counts Teredo (2001::/32, a tunnel
# anyone on the internet can come through), documentation and benchmarking ranges.
LOCAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8",
              "fc00::/7", "fe80::/10", "::1/128")
)  # fmt: skip


def is_local(address: str) -> bool:
    """An address on the pendant's own network (RFC 1918, unique local, link-local or
    loopback; an IPv4-mapped one as its IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # fe80::1%wlan0
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in LOCAL_NETWORKS)


def rate_key(address: str) -> str:
    """Who a rate is counted for: an IPv4 address, or an IPv6 address's /64 (one host picks
    any address in its network's /64 at will)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def parse_offer(payload: bytes) -> Offer | None:
    """The retained offer; None for a cleared one (empty) or anything that is not an offer.

    Checked by hand rather than with pendant.core.events, to keep pydantic out of this small
    process, with the envelope and patterns events.PairingOffer is built from
    (`pendant.core.wire`); a test holds the two to the same answers.
    """
    if not payload or len(payload) > wire.MAX_EVENT_BYTES:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not wire.is_envelope(data, "pairing_offer"):
        return None
    # No other keys: PairingOffer forbids them, so an offer this server takes is one the
    # pairing service can have written.
    if not set(data) <= {*wire.ENVELOPE, "user", "fragment", "expires_ms", "requester"}:
        return None
    user, fragment = data.get("user"), data.get("fragment")
    expires_ms, requester = data.get("expires_ms"), data.get("requester")
    ok = (
        isinstance(user, str)
        and wire.PHONE_USER.fullmatch(user) is not None
        and isinstance(fragment, str)
        and len(fragment) <= wire.FRAGMENT_MAX_CHARS
        and wire.FRAGMENT.fullmatch(fragment) is not None
        and type(expires_ms) is int
        and 0 <= expires_ms <= wire.EPOCH_MS_MAX
        and (requester is None or (isinstance(requester, str) and wire.HEX_ID.fullmatch(requester)))
    )
    if not ok:
        return None
    return Offer(data["device_id"], user, fragment, expires_ms, requester)


class PairingDesk:
    """The bus side of `/pair`: holds the live offer, sends "taken" back.

    One asyncio task (`run`) on the server's own loop: it reads the retained offer and its
    clearing, and publishes a `pairing_taken` for each offer handed out, reconnecting while
    the bus is away (an offer is not handed out while its clearing might have been missed).
    An offer handed out is remembered (until it expires) and never handed out again; its
    report stays queued until the bus acknowledges it.
    """

    def __init__(self, socket_path: str, password: str, user: str = BUS_USER) -> None:
        self.socket_path = socket_path
        self.user = user
        self._password = password
        self.offer: Offer | None = None
        self.connected = asyncio.Event()
        # Offers not yet reported taken, oldest first; every offer ever handed out (until it
        # expires), so that none is handed out twice.
        self._taken: list[Offer] = []
        self._handed: dict[tuple[str, str], int] = {}
        # Who asked for the live offer (its user), by address; requests not yet reported.
        self._asks_for: str | None = None
        self._asks: dict[str, Ask] = {}
        self._requests: list[tuple[Offer, Ask]] = []
        self._wake = asyncio.Event()

    def ask(self, source: str, token: str | None) -> PairAnswer:
        """`GET /pair` from `source` with the token its page carried, if any.

        The offer, for the one phone the wearer accepted (by pressing its code); otherwise
        nothing, or this phone's request while it waits for the wearer (with its code and
        token). A new address's request gets a code no other address of this offer has, and
        is reported on the bus, where the pairing service matches the wearer's count to it.
        """
        offer = self.offer
        if offer is None or not offer.live() or _key(offer) in self._handed:
            return PairAnswer()
        if self._asks_for != offer.user:
            self._asks_for, self._asks = offer.user, {}
        mine = self._asks.get(source)
        if mine is None:
            if offer.requester is not None:
                return PairAnswer()  # the wearer chose already: too late to ask
            free = [c for c in range(1, PAIR_CODES + 1) if c not in self.codes()]
            if not free:
                return PairAnswer(full=True)
            mine = Ask(wire.new_id(), secrets.token_hex(16), secrets.choice(free))
            self._asks[source] = mine
            self._requests.append((offer, mine))
            self._wake.set()
        if offer.requester is None:
            return PairAnswer(waiting=mine)
        accepted = (
            offer.requester == mine.requester
            and token is not None
            and hmac.compare_digest(token.encode(), mine.token.encode())
        )
        return PairAnswer(offer=self.take()) if accepted else PairAnswer()

    def codes(self) -> set[int]:
        """The codes given out for the live offer."""
        return {a.code for a in self._asks.values()}

    def asking(self) -> frozenset[str]:
        """The addresses that ask for the live offer."""
        offer = self.offer
        if offer is None or self._asks_for != offer.user:
            return frozenset()
        return frozenset(self._asks)

    def take(self) -> Offer | None:
        """The live offer, at most once: whoever gets it, no one else will.

        Marked taken here, before anything else: the same offer, replayed by the broker after
        a reconnect (it stays retained until the pairing service hears of it), is never handed
        out again, and its "taken" report is sent again instead (see `_read`).
        """
        offer, self.offer = self.offer, None
        if offer is None or not offer.live() or _key(offer) in self._handed:
            return None
        now_ms = wire.now_ms()
        self._handed = {k: until for k, until in self._handed.items() if until > now_ms}
        self._handed[_key(offer)] = offer.expires_ms
        self._report(offer)
        return offer

    def _report(self, offer: Offer) -> None:
        """Queue `offer`'s "taken" report: sent, and re-sent after each reconnect, until the
        bus acknowledges it (QoS 1). The pairing service takes it once (by user)."""
        if offer not in self._taken:
            self._taken.append(offer)
        self._wake.set()

    async def run(self) -> None:
        """Follow the pairing offer on the bus and report requests and taken offers, until
        cancelled; a lost bus is retried (`BUS_RETRY_S`) while the app is still served."""
        failures = 0
        while True:
            client = mqtt.client(
                socket=self.socket_path,
                client_id=f"pendant-web-{os.getpid()}",
                username=self.user,
                password=self._password,
            )
            try:
                async with client:
                    await client.subscribe(OFFER_TOPIC, qos=wire.QOS)
                    self.connected.set()
                    failures = 0
                    await first_to_end(self._read(client), self._send(client))
            except aiomqtt.MqttError as exc:
                if failures == 0:  # once per outage, not every retry
                    where = self.socket_path
                    log.warning("bus at %s: %s (no pairing until it is back)", where, exc)
            self.connected.clear()
            self.offer = None
            await asyncio.sleep(BUS_RETRY_S[min(failures, len(BUS_RETRY_S) - 1)])
            failures += 1

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = bytes(message.payload)  # type: ignore[arg-type]
            offer = parse_offer(payload)
            if payload and offer is None:
                log.warning("bus: ignored a malformed pairing offer")
            if offer is not None and _key(offer) in self._handed:
                # Handed out already, and still on offer: the pairing service has not heard
                # (the report was lost, or it reconnected and offers it again). Tell it again.
                self.offer = None
                self._report(offer)
            else:
                self.offer = offer
        raise aiomqtt.MqttError("the bus closed")

    async def _send(self, client: aiomqtt.Client) -> None:
        # What is still unreported goes first, on every (re)connection.
        while True:
            self._wake.clear()
            while self._requests:
                offer, ask = self._requests[0]
                request = pairing_request(offer, ask)
                # As the report below: queued until the broker has it, so that the pairing
                # service counts every phone that asked.
                await client.publish(REQUEST_TOPIC, json.dumps(request).encode(), qos=wire.QOS)
                if self._requests and self._requests[0] == (offer, ask):
                    self._requests.pop(0)
            while self._taken:
                offer = self._taken[0]
                event = pairing_taken(offer)
                # QoS 1: returns once the broker has acknowledged it; a drop before that
                # raises, and the report stays queued for the next connection.
                await client.publish(TAKEN_TOPIC, json.dumps(event).encode(), qos=wire.QOS)
                if self._taken and self._taken[0] is offer:
                    self._taken.pop(0)
            await self._wake.wait()


def pairing_request(offer: Offer, ask: Ask) -> dict[str, object]:
    """The `pairing_request` event reporting `ask` for `offer` (events.PairingRequest's wire
    format, built without pydantic: `wire.envelope`)."""
    return wire.envelope(
        "pairing_request",
        offer.device_id,
        user=offer.user,
        requester=ask.requester,
        code=ask.code,
    )


def pairing_taken(offer: Offer) -> dict[str, object]:
    """The `pairing_taken` event reporting `offer` handed out (events.PairingTaken's wire
    format, built without pydantic: `wire.envelope`)."""
    return wire.envelope("pairing_taken", offer.device_id, user=offer.user)


def _key(offer: Offer) -> tuple[str, str]:
    return (offer.user, offer.fragment)


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
{refresh}<title>Pendant: pairing</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<main>
<h1>Pairing</h1>
{text}
</main>
</body>
</html>
"""


def pair_page(
    offer: Offer | None, waiting: Ask | None = None, asked: bool = False, full: bool = False
) -> bytes:
    """`/pair`'s answer: on to the app with the login in the fragment; or, for a phone
    `waiting` for the wearer, a page with its code that comes back; or, when `full`, that
    too many devices ask; or how to open pairing (`asked`: this phone had asked, and the
    window ended without it)."""
    if offer is None and waiting is not None:
        again = html.escape(f"{PAIR_PATH}?r={waiting.token}", quote=True)
        refresh = f'<meta http-equiv="refresh" content="{PAIR_POLL_S}; url={again}">\n'
        n = waiting.code
        times = "once" if n == 1 else f"{n} times"
        text = (
            f'<p class="code">Press the pendant\'s button <strong id="code">{n}</strong> '
            f"{'time' if n == 1 else 'times'}</p>"
            f"<p>This phone asks to pair, and its code is {n}. The pendant buzzes and its LED "
            "flashes three times, over and over, when a phone asks (it never shows a code: "
            f"only this screen does). <strong>Press its button {times}</strong>, short presses "
            "less than a second apart, then wait. This page goes on by itself.</p>"
            "<p>Press the number this screen shows, never one you were told: other devices "
            "may be asking too, each with its own code. A count that matches no device's code "
            "refuses them all; then hold the button again to start over.</p>"
        )
        return _PAGE.format(refresh=refresh, text=text).encode()
    if offer is None and full:
        text = (
            f"<p>{PAIR_CODES} devices are asking to pair already, which is too many: someone "
            "else on the network may be trying to pair. Hold the pendant's button for "
            f"{PAIRING_HOLD_S} seconds to close pairing, then open it again and this page.</p>"
        )
        return _PAGE.format(refresh="", text=text).encode()
    if offer is None:
        ended = (
            "<p>Pairing ended without this phone: the window closed, the pendant accepted "
            "another device, or the presses matched no device's code.</p>"
            if asked
            else ""
        )
        text = ended + (
            f"<p>Hold the pendant's button for {PAIRING_HOLD_S} seconds to open pairing (the LED "
            "shows it), then open this page again.</p>"
        )
        return _PAGE.format(refresh="", text=text).encode()
    link = html.escape("/#" + offer.fragment, quote=True)
    refresh = f'<meta http-equiv="refresh" content="0; url={link}">\n'
    text = (
        f'<p>This phone is being paired. <a href="{link}">Open the pendant\'s app</a> if it '
        "does not open by itself. This page works once.</p>"
    )
    return _PAGE.format(refresh=refresh, text=text).encode()
