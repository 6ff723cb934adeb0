"""The companion app's web server: the files of device/pendant/web over HTTPS, nothing else.

    python -m pendant.web --cert CERT --key KEY [--port 8443] [--bind ADDR] [--root DIR]
                                [--ca CA] [--http-port 80]

A small static server on one asyncio loop, because mosquitto 2.0.11's built-in one (Debian
12, `http_dir`) offers HTTP/2 by ALPN and then answers HTTP/1.0 (browsers fail with
ERR_HTTP2_PROTOCOL_ERROR), and sends no Content-Type (browsers refuse the service worker).

- TLS 1.2 or later, ALPN `http/1.1` only, with the broker's own server certificate and key.
- HTTP/1.1 (and 1.0), GET and HEAD only (405 otherwise); no request body (a request with a
  `Content-Length` or `Transfer-Encoding` is a 400).
- Only regular files directly in the web folder (and its sub-folders) whose extension it
  knows; found when it starts, never by joining a request path to the folder, so `..`,
  `%2e%2e`, symlinks and directory listings lead nowhere (404). `/` is index.html.
- Content-Type per extension; `Cache-Control: no-cache` (with an ETag, so a revalidation is a
  304); a Content-Security-Policy that lets the page open a WebSocket only to the host it
  was loaded from (`wss://<Host>:*`: the pendant's MQTT WebSocket, on another port), never to
  another host; `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
- Requests are parsed by h11 (`pendant.web.http`), a maintained parser, rather than by hand.
  Bounded: request line and each header line 4 KiB, 32 headers, 16 KiB in all; 10 s to send
  a request (and to finish the TLS handshake). Strict: the target is visible ASCII, header
  names are tokens, values have no control characters, and a second `Host` is a 400.
- Connections are counted from the TCP accept, before TLS starts: 32 at once, 8 from one
  address (more are closed before TLS), 16 in their handshake; one serves at most 100 requests
  for at most 60 s. When it is full, a newcomer takes the place of the connection that made
  progress longest ago of the address with the most. So a flood of connects costs a bounded
  amount of memory, and no one address can keep another out.

Two answers say what the server knows rather than what a file holds, both `no-store`:
`GET /ca.crt`, the device's CA (`--ca`: the CA file provisioning made), DER-encoded, as
`application/x-x509-ca-cert` (`pendant.setup.ca`), for a phone to install and trust; and `GET
/server.json`, `{"ca_sha256": "AB:CD:...", "broker": "up"|"down"|"unknown"}`: that CA's
fingerprint, which the trust page shows, and whether this server reaches the bus, that is
whether mosquitto runs (unknown without `--bus-socket`). The app asks it when its MQTT
WebSocket never opened: a page that loads while the broker runs and its WebSocket fails is most
likely a phone that does not trust the pendant's certificate yet (browsers never tell a page
why a WebSocket failed), and the app then says so and links the trust page.

Plain HTTP (`--http-port`, or the socket systemd passes, named `http`: port 80 on the device)
only redirects to this server (`pendant.web.redirect`).

One page is not a file: `GET /pair`, the pairing window's door. With `--bus-socket` the server
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

Under systemd (WatchdogSec=) it pings the watchdog while its accept loop still accepts: it
connects to itself now and then, and every accepted connection counts (`pendant.web.watchdog`).

It holds no secret beyond the TLS key and its bus password, reads no config, and logs no
requests. Errors at start (certificate, key, port, bus password file) are one line, exit
code 2. The bus may come and go: the server serves the app all the same, and reconnects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import errno
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import os
import re
import secrets
import signal
import socket
import ssl
import stat
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote

import aiomqtt

from pendant.core import mqtt, wire
from pendant.core import systemd as notify
from pendant.core.errors import PendantError
from pendant.core.wire import WEB_PORT
from pendant.setup import ca as web_ca
from pendant.setup.ca import CaFileError, DeviceCa
from pendant.web import redirect as web_redirect
from pendant.web import watchdog as web_watchdog
from pendant.web.http import MAX_LINE, BadRequest, HttpConnection, Reply, Request

log = logging.getLogger(__name__)

DEFAULT_PORT = WEB_PORT
DEFAULT_ROOT = Path(__file__).resolve().with_name("static")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
# What index.html's own <meta> CSP says, plus what only a header can say: frame-ancestors,
# and which host the MQTT WebSocket may be on. It is on the pendant, on another port than the
# page, so 'self' does not cover it; the meta tag, which cannot know the pendant's name, says
# `wss:`, and this header narrows it (a page obeys both policies) to `wss://<the host the page
# came from>:*`, never another host. See `csp`.
CSP_TEMPLATE = (
    "default-src 'self'; connect-src {connect}; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
# A Host header that is a plain name or IPv4 address, with an optional port: nothing that can
# end a CSP source or directive. An IPv6 literal has no CSP host-source spelling.
_HOST = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(?::[0-9]{1,5})?")


def csp(host: str | None) -> str:
    """The Content-Security-Policy for a request whose Host header is `host`.

    The browser sent the name it used for the pendant, so the page's WebSocket may go to that
    host (any port: the broker's WebSocket port is the broker's setting) and nowhere else. A
    Host that is missing or not a plain name/IPv4 (an IPv6 literal) gets `'self'` only.
    """
    match = _HOST.fullmatch(host or "")
    connect = f"'self' wss://{match.group(1).lower()}:*" if match else "'self'"
    return CSP_TEMPLATE.format(connect=connect)


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 30.0
# Counted from the TCP accept, before any TLS: a connection in its handshake already holds
# ~300 KB (asyncio's 256 KiB TLS buffer, OpenSSL's state), so 32 of them and the ~26 MB the
# process needs stay well inside the unit's MemoryMax=48M.
MAX_CONNECTIONS = 32
# One address's share: a browser opens at most 6 connections to a host.
MAX_PER_SOURCE = 8
# TLS handshakes in progress at once (each also bounded by the read timeout).
MAX_HANDSHAKES = 16
# A connection serves this many requests, for this long, then closes (the browser reconnects).
MAX_REQUESTS_PER_CONNECTION = 100
CONNECTION_LIFETIME_S = 60.0
# Files bigger than this are not served (mqtt.min.js is ~340 KiB).
MAX_FILE = 4 * 1024 * 1024


PAIR_PATH = "/pair"
SERVER_INFO_PATH = "/server.json"
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


class WebServerError(RuntimeError):
    """The server cannot start; the message names what to fix."""


# --- the files ------------------------------------------------------------------------------


def scan(root: Path) -> dict[str, Path]:
    """URL path -> file, for every regular file under `root` with a known extension.

    Symlinks (to files or folders) and dot-files are left out, so nothing outside `root` and
    nothing but the app is ever reachable. `/` is index.html.
    """
    root = Path(root)
    if not root.is_dir():
        raise WebServerError(f"{root}: not a folder (--root)")
    files: dict[str, Path] = {}

    def walk(folder: Path, prefix: str) -> None:
        for entry in os.scandir(folder):
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                walk(Path(entry.path), f"{prefix}{entry.name}/")
            elif entry.is_file(follow_symlinks=False) and Path(entry.name).suffix in CONTENT_TYPES:
                files[f"{prefix}{entry.name}"] = Path(entry.path)

    walk(root, "/")
    if "/index.html" in files:
        files["/"] = files["/index.html"]
    return files


def url_path(target: str) -> str | None:
    """The request target's path, percent-decoded; None when it is not a plain absolute path."""
    path = target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\\" in decoded or "\0" in decoded or "//" in decoded:
        return None
    if any(part in (".", "..") for part in decoded.split("/")):
        return None
    return decoded


_cache: dict[Path, tuple[tuple[int, int, int], bytes, str]] = {}


def read_file(path: Path) -> tuple[bytes, str] | None:
    """Its bytes and an ETag; None if it is gone, no longer a regular file, or too big.

    Opened without following a symlink every time; read again only when it changed, so every
    connection shares one copy of each file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            return None
        version = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = _cache.get(path)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        body = f.read(MAX_FILE + 1)
    if len(body) > MAX_FILE:
        return None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    _cache[path] = (version, body, etag)
    return body, etag


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
                    reader = asyncio.create_task(self._read(client))
                    sender = asyncio.create_task(self._send(client))
                    try:
                        done, _ = await asyncio.wait(
                            {reader, sender}, return_when=asyncio.FIRST_COMPLETED
                        )
                        for task in done:
                            task.result()
                    finally:
                        for task in (reader, sender):
                            task.cancel()
                        await asyncio.gather(reader, sender, return_exceptions=True)
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


# --- HTTP -----------------------------------------------------------------------------------


def server_info(ca: DeviceCa | None, pairing: PairingDesk | None) -> bytes:
    """`/server.json`: the CA's fingerprint, and whether the broker runs as far as this
    server can tell (its bus connection is up; unknown without one)."""
    broker = "unknown" if pairing is None else ("up" if pairing.connected.is_set() else "down")
    info = {"ca_sha256": ca.sha256 if ca is not None else None, "broker": broker}
    return (json.dumps(info) + "\n").encode()


def respond(
    req: Request | None,
    files: dict[str, Path],
    status: int = 0,
    pairing: PairingDesk | None = None,
    last: bool = False,
    source: str = "",
    limit: RateLimit | None = None,
    ca: DeviceCa | None = None,
) -> Reply:
    """The response to `req` (None: a request refused with `status`), and whether the
    connection stays open (never after the `last`).

    `GET /pair` from a local `source`, within its `limit`, asks `pairing` for its offer (see
    `PairingDesk.ask`). `/ca.crt` is `ca` (404 without one), `/server.json` what
    `server_info` says.
    """
    common = {
        "Date": email.utils.formatdate(usegmt=True),
        "Content-Security-Policy": csp(req.headers.get("host") if req is not None else None),
        **SECURITY_HEADERS,
    }
    keep = (
        req is not None
        and status == 0
        and not last
        and req.version == "HTTP/1.1"
        and req.headers.get("connection", "").lower() != "close"
    )
    body = b""
    headers: dict[str, str] = {}
    if req is not None and status == 0:
        if req.method not in ("GET", "HEAD"):
            status, keep = 405, False
            headers["Allow"] = "GET, HEAD"
        elif "content-length" in req.headers or "transfer-encoding" in req.headers:
            # A GET with a body is not ours to read. Even a length of 0: h11 merges a repeated
            # `Content-Length: 0` into one, and a second length must not pass unnoticed.
            status, keep = 400, False
        elif url_path(req.path) == PAIR_PATH:
            if not is_local(source):
                status, keep = 403, False  # pairing is for a phone on the pendant's network
            elif limit is not None and not limit.allow(rate_key(source)):
                status, keep = 429, False
                headers["Retry-After"] = str(PAIR_POLL_S)
            else:
                # Only a GET asks: a HEAD (a link preview, say) must not count as a phone.
                answer, token = PairAnswer(), None
                if pairing is not None and req.method == "GET":
                    token = parse_qs(req.path.partition("?")[2]).get("r", [None])[0]
                    answer = pairing.ask(source, token)
                body = pair_page(answer.offer, answer.waiting, token is not None, answer.full)
                status = 200
                headers = {"Content-Type": CONTENT_TYPES[".html"], "Cache-Control": "no-store"}
        elif url_path(req.path) == web_ca.PATH and ca is not None:
            status, body = 200, ca.der
            headers = {
                "Content-Type": web_ca.CONTENT_TYPE,
                "Content-Disposition": f'attachment; filename="{web_ca.FILENAME}"',
                # Never a copy kept past a renewal (a new CA): the phone must get this one.
                "Cache-Control": "no-store",
            }
        elif url_path(req.path) == SERVER_INFO_PATH:
            status, body = 200, server_info(ca, pairing)
            headers = {"Content-Type": CONTENT_TYPES[".json"], "Cache-Control": "no-store"}
        else:
            path = url_path(req.path)
            found = files.get(path) if path is not None else None
            content = read_file(found) if found is not None else None
            if content is None:
                status = 404
            else:
                body, etag = content
                headers = {
                    "Content-Type": CONTENT_TYPES[found.suffix],  # type: ignore[union-attr]
                    "Cache-Control": "no-cache",
                    "ETag": etag,
                }
                if req.headers.get("if-none-match") == etag:
                    status, body = 304, b""
                else:
                    status = 200
    if status not in (200, 304):
        body = f"{status} {HTTPStatus(status).phrase.lower()}\n".encode()
        headers["Content-Type"] = "text/plain; charset=utf-8"
    if status != 304:
        headers["Content-Length"] = str(len(body))
    if req is not None and req.method == "HEAD":
        body = b""
    return Reply(status, {**common, **headers}, body, keep)


@dataclass(eq=False)
class _Connection:
    source: str
    task: asyncio.Task[None] | None
    # When it last made progress (accepted, shook hands, sent a request, took a chunk).
    active_s: float
    handshaking: bool = True
    evicted: bool = False


def source_of(peer: object) -> str:
    """The address a connection came from (an IPv4-mapped IPv6 address as IPv4)."""
    address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
    return address.removeprefix("::ffff:") if "." in address else address


class Server:
    """Accepts plain TCP, counts and admits each connection, and only then starts its TLS.

    At most `MAX_CONNECTIONS` at once, `MAX_PER_SOURCE` from one address (more are closed at
    once, before TLS) and `MAX_HANDSHAKES` in their TLS handshake. When the handshakes or the
    connections are at their cap, a newcomer takes the place of another: from the address with
    the most connections, the one that made progress longest ago. A browser whose idle
    keep-alive connection is closed opens another; a silent flood only pushes itself out.
    """

    def __init__(
        self,
        root: Path,
        context: ssl.SSLContext,
        read_timeout: float = READ_TIMEOUT_S,
        pairing: PairingDesk | None = None,
        lifetime_s: float = CONNECTION_LIFETIME_S,
        ca: DeviceCa | None = None,
    ) -> None:
        self.root = root
        self.read_timeout = read_timeout
        self.lifetime_s = lifetime_s
        self.files = scan(root)
        self.context = context
        self.pairing = pairing
        self.ca = ca
        self.pair_limit = RateLimit()
        self.connections: list[_Connection] = []

    @property
    def open(self) -> int:
        return len(self.connections)

    def admit(self, conn: _Connection) -> list[asyncio.Task[None]] | None:
        """Count `conn` in, making room if need be: the tasks of the connections it replaces.

        None: its address has its share already.
        """
        if sum(1 for c in self.connections if c.source == conn.source) >= MAX_PER_SOURCE:
            return None
        evicted = []
        if sum(1 for c in self.connections if c.handshaking) >= MAX_HANDSHAKES:
            evicted.append(self._evict(self._victim(handshakes_only=True)))
        if self.open >= MAX_CONNECTIONS:
            evicted.append(self._evict(self._victim(handshakes_only=False)))
        self.connections.append(conn)
        return [task for task in evicted if task is not None]

    def _victim(self, handshakes_only: bool) -> _Connection:
        counts: dict[str, int] = {}
        for c in self.connections:
            counts[c.source] = counts.get(c.source, 0) + 1
        candidates = [c for c in self.connections if c.handshaking or not handshakes_only]
        # The phones that ask to pair keep their connections while any other can go: a flood
        # must not cut the wearer's off while it waits for the wearer's presses.
        asking = self.pairing.asking() if self.pairing is not None else frozenset()
        candidates = [c for c in candidates if c.source not in asking] or candidates
        return min(candidates, key=lambda c: (-counts[c.source], c.active_s))

    def _evict(self, conn: _Connection) -> asyncio.Task[None] | None:
        self.connections.remove(conn)
        conn.evicted = True
        if conn.task is not None:
            conn.task.cancel()
        return conn.task

    def _release(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(
            source_of(writer.get_extra_info("peername")), asyncio.current_task(), time.monotonic()
        )
        evicted = self.admit(conn)
        if evicted is None:
            writer.transport.abort()
            return
        try:
            if evicted:
                # Their TLS state (~300 KB each) is freed before this one's is made: under a
                # flood of connects, one loop turn starts dozens of handshakes, each replacing
                # the one before. Reading paused, so that the client's first bytes reach TLS.
                writer.transport.pause_reading()
                await asyncio.wait(evicted)
                if writer.transport.is_closing():
                    return
            # No other await before this: the first bytes of the client must reach TLS.
            await writer.start_tls(self.context, ssl_handshake_timeout=self.read_timeout)
            conn.handshaking = False
            conn.active_s = time.monotonic()
            await self._serve(reader, writer, conn)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not conn.evicted:
                raise
        finally:
            self._release(conn)
            if conn.evicted or conn.handshaking:
                writer.transport.abort()
            else:
                with contextlib.suppress(Exception):
                    writer.close()
                    async with asyncio.timeout(2.0):
                        await writer.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Connection
    ) -> None:
        http = HttpConnection(reader)
        served = 0
        deadline_s = time.monotonic() + self.lifetime_s
        while True:
            status = 0
            wait_s = min(self.read_timeout, deadline_s - time.monotonic())
            try:
                if wait_s <= 0:
                    raise TimeoutError
                async with asyncio.timeout(wait_s):
                    req = await http.next_request()
            except TimeoutError:
                return  # an idle keep-alive connection, a slow client, or its time is up: close
            except BadRequest as bad:
                req, status = None, bad.status
            if req is None and status == 0:
                return
            conn.active_s = time.monotonic()
            served += 1
            last = served >= MAX_REQUESTS_PER_CONNECTION or time.monotonic() >= deadline_s
            reply = respond(
                req, self.files, status, self.pairing, last, conn.source, self.pair_limit, self.ca
            )
            # In chunks, each drained: a connection buffers at most ~2 chunks.
            for data in http.frame(reply):
                writer.write(data)
                async with asyncio.timeout(WRITE_TIMEOUT_S):
                    await writer.drain()
                conn.active_s = time.monotonic()
            if not http.next_cycle():
                return


# --- starting -------------------------------------------------------------------------------


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # HTTP/1.1 only: a browser that asks for h2 gets http/1.1 (or nothing), never HTTP/2.
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    for path, what, marker in ((cert, "--cert", "CERTIFICATE"), (key, "--key", "PRIVATE KEY")):
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            raise WebServerError(f"{path}: no such file ({what})") from None
        except PermissionError:
            raise WebServerError(f"{path}: not readable by this user ({what})") from None
        except OSError as exc:
            raise WebServerError(f"{path}: {exc.strerror or exc} ({what})") from None
        if f"-----BEGIN {marker}" not in text and not (
            marker == "PRIVATE KEY" and "PRIVATE KEY-----" in text
        ):
            raise WebServerError(f"{path}: not a PEM {marker.lower()} ({what})")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        if reason == "KEY_VALUES_MISMATCH":
            reason = "the key does not belong to the certificate"
        raise WebServerError(f"cannot use certificate {cert} with key {key}: {reason}") from None
    return ctx


async def serve(
    root: Path,
    cert: Path,
    key: Path,
    port: int,
    bind: str | None = None,
    started: asyncio.Event | None = None,
    read_timeout: float = READ_TIMEOUT_S,
    pairing: PairingDesk | None = None,
    lifetime_s: float = CONNECTION_LIFETIME_S,
    ca: DeviceCa | None = None,
    http_port: int | None = None,
    http_sockets: list[socket.socket] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation); with `pairing`, its bus task too; with
    `http_sockets` (from systemd) or `http_port`, plain HTTP redirected to `port`."""
    server = Server(Path(root), tls_context(cert, key), read_timeout, pairing, lifetime_s, ca)
    heartbeat = notify.Heartbeat("accept loop")
    redirector = web_redirect.Redirector(port)
    try:
        plain = await web_redirect.start(redirector, http_sockets or [], http_port, bind)
    except OSError as exc:
        raise _listen_error(exc, bind, http_port or 0, "--http-port") from None
    try:
        # Plain TCP: Server.handle counts a connection in before it starts its TLS.
        listener = await asyncio.start_server(
            web_watchdog.beating(server.handle, heartbeat),
            host=bind or None,
            port=port,
            limit=MAX_LINE,
            reuse_address=True,
        )
    except OSError as exc:
        for s in plain:
            s.close()
        raise _listen_error(exc, bind, port, "--port") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    addresses = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in listener.sockets)
    log.warning("serving %s (%d files) on https://%s", root, len(server.files), addresses)
    if plain:
        where = ", ".join(web_redirect.addresses(plain))
        log.warning("redirecting http://%s to port %d", where, port)
    desk = asyncio.create_task(pairing.run(), name="pairing") if pairing is not None else None
    watchdog = asyncio.create_task(web_watchdog.watch(listener, heartbeat), name="watchdog")
    if started is not None:
        started.set()
    try:
        async with listener:
            await stop.wait()
    finally:
        for s in plain:
            s.close()
        watchdog.cancel()
        if desk is not None:
            desk.cancel()
        await asyncio.gather(watchdog, *([desk] if desk else []), return_exceptions=True)
    log.warning("stopped")


def _listen_error(exc: OSError, bind: str | None, port: int, option: str) -> WebServerError:
    where = f"{bind or '*'}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return WebServerError(f"port {port} is taken ({where}): choose another {option}")
    if exc.errno == errno.EACCES:
        return WebServerError(
            f"not allowed to listen on {where}: use a port >= 1024 (or a systemd socket)"
        )
    return WebServerError(f"cannot listen on {where}: {exc.strerror or exc}")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pendant.web", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the app's folder")
    p.add_argument("--cert", type=Path, required=True, help="server certificate (PEM)")
    p.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--bind", default="", help="address to listen on (default: all)")
    p.add_argument(
        "--ca",
        type=Path,
        help="the device's CA certificate (PEM): served at /ca.crt for phones to trust",
    )
    p.add_argument(
        "--http-port",
        type=_port,
        help="also listen for plain HTTP here and redirect it to --port (default: none, or "
        "the socket systemd passes, named 'http')",
    )
    p.add_argument(
        "--bus-socket",
        help="the device-local bus's unix socket: serve pairing offers at /pair (default: none)",
    )
    p.add_argument(
        "--bus-password-file",
        type=Path,
        help=f"file (0600 or a credential) with bus user {BUS_USER!r}'s password",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_S,
        help=f"seconds for a handshake, or a request, to arrive (default {READ_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--connection-lifetime",
        type=float,
        default=CONNECTION_LIFETIME_S,
        help=f"seconds a connection is kept, at most (default {CONNECTION_LIFETIME_S:g})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="webserver: %(message)s")
    try:
        pairing = None
        if args.bus_socket:
            if args.bus_password_file is None:
                raise WebServerError("--bus-socket needs --bus-password-file")
            try:
                password = mqtt.read_secret(str(args.bus_password_file), "--bus-password-file")
            except PendantError as exc:
                raise WebServerError(str(exc)) from None
            assert password is not None
            pairing = PairingDesk(args.bus_socket, password)
        try:
            ca = DeviceCa.load(args.ca) if args.ca is not None else None
        except CaFileError as exc:
            raise WebServerError(str(exc)) from None
        http_sockets = web_redirect.listen_fds()

        async def main() -> None:
            await serve(
                args.root,
                args.cert,
                args.key,
                args.port,
                args.bind,
                read_timeout=args.read_timeout,
                pairing=pairing,
                lifetime_s=args.connection_lifetime,
                ca=ca,
                http_port=args.http_port,
                http_sockets=http_sockets,
            )

        asyncio.run(main())
    except WebServerError as exc:
        print(f"webserver: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
