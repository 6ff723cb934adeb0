"""The companion app's web server: the files of device/pendant/web/static over HTTPS.

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

One page is not a file: `GET /pair`, the pairing window's door (`pendant.web.pair_desk`).

It runs as a component under `pendant.core.supervise`, as the other services do: READY=1 once
it listens, STOPPING=1 on SIGTERM, and under WatchdogSec= the watchdog pinged while its accept
loop still accepts: it connects to itself now and then, and every accepted connection counts
(`pendant.web.watchdog`).

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
import json
import logging
import os
import re
import socket
import ssl
import stat
import sys
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, unquote

from pendant.core import mqtt
from pendant.core import systemd as notify
from pendant.core.errors import PendantError
from pendant.core.supervise import Ready, first_to_end, supervise, unobserved
from pendant.core.wire import WEB_PORT
from pendant.setup import ca as web_ca
from pendant.setup.ca import CaFileError, DeviceCa
from pendant.web import redirect as web_redirect
from pendant.web import watchdog as web_watchdog
from pendant.web.http import MAX_LINE, BadRequest, HttpConnection, Reply, Request
from pendant.web.pair_desk import (
    BUS_USER,
    PAIR_PATH,
    PAIR_POLL_S,
    PairAnswer,
    PairingDesk,
    RateLimit,
    is_local,
    pair_page,
    rate_key,
)

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


SERVER_INFO_PATH = "/server.json"


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
        """The connections counted in now."""
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
        """Serve one accepted connection (TLS, then requests) within the limits, until it ends."""
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
    """The server's TLS (1.2 or later, ALPN http/1.1 only) from PEM files; WebServerError,
    naming the option, when one cannot be read."""
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


class WebServer:
    """pendant-web as a component (`pendant.core.supervise`): the HTTPS listener, the plain
    HTTP redirect, the pairing desk's bus loop and the watchdog's self-probe.

    Built, it has checked its certificate and key; `run` binds its ports (or takes the sockets
    systemd passed), says it is ready, and serves until cancelled. Its heartbeat is beaten by
    every accepted connection (`pendant.web.watchdog`).
    """

    name = "web"

    def __init__(
        self,
        root: Path,
        cert: Path,
        key: Path,
        port: int,
        bind: str | None = None,
        read_timeout: float = READ_TIMEOUT_S,
        pairing: PairingDesk | None = None,
        lifetime_s: float = CONNECTION_LIFETIME_S,
        ca: DeviceCa | None = None,
        http_port: int | None = None,
        http_sockets: list[socket.socket] | None = None,
    ) -> None:
        self.server = Server(
            Path(root), tls_context(cert, key), read_timeout, pairing, lifetime_s, ca
        )
        self.heartbeat = notify.Heartbeat("accept loop")
        self.port, self.bind = port, bind
        self.http_port, self.http_sockets = http_port, http_sockets or []

    async def run(self, ready: Ready = unobserved) -> None:
        """Serve until cancelled; `ready` once every port listens."""
        redirector = web_redirect.Redirector(self.port)
        try:
            plain = await web_redirect.start(
                redirector, self.http_sockets, self.http_port, self.bind
            )
        except OSError as exc:
            raise _listen_error(exc, self.bind, self.http_port or 0, "--http-port") from None
        try:
            try:
                # Plain TCP: Server.handle counts a connection in before it starts its TLS.
                listener = await asyncio.start_server(
                    web_watchdog.beating(self.server.handle, self.heartbeat),
                    host=self.bind or None,
                    port=self.port,
                    limit=MAX_LINE,
                    reuse_address=True,
                )
            except OSError as exc:
                raise _listen_error(exc, self.bind, self.port, "--port") from None
            async with listener:
                where = [f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in listener.sockets]
                files = len(self.server.files)
                log.warning(
                    "serving %s (%d files) on https://%s", self.server.root, files, ", ".join(where)
                )
                if plain:
                    plain_where = ", ".join(web_redirect.addresses(plain))
                    log.warning("redirecting http://%s to port %d", plain_where, self.port)
                loops = [listener.serve_forever()]
                if self.server.pairing is not None:
                    loops.append(self.server.pairing.run())
                interval_s = notify.watchdog_interval_s()
                if interval_s:
                    # Nobody may visit for hours: the server connects to itself, so a beat
                    # still proves the accept loop accepts.
                    address = web_watchdog.probe_address(listener)
                    loops.append(web_watchdog.probe(address, interval_s / 4))
                ready(f"serving https://{where[0]}")
                await first_to_end(*loops)
        finally:
            for s in plain:
                s.close()


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
    """`python -m pendant.web`: serve until SIGTERM; exit code 2 with one line on a start error."""
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

        server = WebServer(
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
        asyncio.run(supervise(server))
    except WebServerError as exc:
        print(f"webserver: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
