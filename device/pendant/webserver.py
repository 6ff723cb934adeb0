"""The companion app's web server: the files of device/pendant/web over HTTPS, nothing else.

    python -m pendant.webserver --cert CERT --key KEY [--port 8443] [--bind ADDR] [--root DIR]

A small static server on one asyncio loop, because mosquitto 2.0.11's built-in one (Debian
12, `http_dir`) offers HTTP/2 by ALPN and then answers HTTP/1.0 (browsers fail with
ERR_HTTP2_PROTOCOL_ERROR), and sends no Content-Type (browsers refuse the service worker).

- TLS 1.2 or later, ALPN `http/1.1` only, with the broker's own server certificate and key.
- HTTP/1.1 (and 1.0), GET and HEAD only (405 otherwise); no request body.
- Only regular files directly in the web folder (and its sub-folders) whose extension it
  knows; found when it starts, never by joining a request path to the folder, so `..`,
  `%2e%2e`, symlinks and directory listings lead nowhere (404). `/` is index.html.
- Content-Type per extension; `Cache-Control: no-cache` (with an ETag, so a revalidation is a
  304); a Content-Security-Policy that lets the page open `wss:` (the pendant's MQTT
  WebSocket, on another port), `X-Content-Type-Options: nosniff`, `Referrer-Policy:
  no-referrer`.
- Bounded: request line and each header line 4 KiB, 32 headers, 16 KiB in all; 10 s to send
  a request (and to finish the TLS handshake), 32 connections at once.

It holds no secret beyond the TLS key, reads no config and touches no bus: it only serves the
app; the phone's login stays in the URL fragment, which browsers never send. It logs no
requests. Errors at start (certificate, key, port) are one line, exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import errno
import hashlib
import logging
import os
import signal
import ssl
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

log = logging.getLogger(__name__)

DEFAULT_PORT = 8443
DEFAULT_ROOT = Path(__file__).resolve().with_name("web")

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
# What index.html's own <meta> CSP says, plus what only a header can say (frame-ancestors).
# connect-src wss: is the MQTT WebSocket: on the pendant, but on another port than the page.
CSP = (
    "default-src 'self'; connect-src 'self' wss:; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; worker-src 'self'; manifest-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

MAX_LINE = 4096
MAX_HEADERS = 32
MAX_REQUEST = 16384
READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 32
CHUNK = 32768
# Files bigger than this are not served (mqtt.min.js is ~340 KiB).
MAX_FILE = 4 * 1024 * 1024
REASONS = {
    200: "OK",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


class WebServerError(RuntimeError):
    """The server cannot start; the message names what to fix."""


class _BadRequest(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]


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


async def _line(reader: asyncio.StreamReader, budget: list[int]) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(431) from None
    budget[0] -= len(line)
    if budget[0] < 0:
        raise _BadRequest(431)
    return line.rstrip(b"\r\n")


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """One request head; None at a clean end of the connection. Raises _BadRequest."""
    budget = [MAX_REQUEST]
    try:
        first = await _line(reader, budget)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise _BadRequest(400) from None
        return None
    parts = first.decode("latin-1").split(" ")
    if len(parts) != 3:
        raise _BadRequest(400)
    method, target, version = parts
    if not version.startswith("HTTP/"):
        raise _BadRequest(400)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise _BadRequest(505)
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        try:
            raw = await _line(reader, budget)
        except asyncio.IncompleteReadError:
            raise _BadRequest(400) from None
        if not raw:
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400)
        headers[name.lower()] = value.strip()
    else:
        raise _BadRequest(431)
    if version == "HTTP/1.1" and "host" not in headers:
        raise _BadRequest(400)
    return Request(method, target, version, headers)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS[status]}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def respond(req: Request | None, files: dict[str, Path], status: int = 0) -> tuple[bytes, bool]:
    """The response's bytes and whether the connection stays open."""
    common = {"Date": email.utils.formatdate(usegmt=True), **SECURITY_HEADERS}
    keep = (
        req is not None
        and status == 0
        and req.version == "HTTP/1.1"
        and req.headers.get("connection", "").lower() != "close"
    )
    body = b""
    headers: dict[str, str] = {}
    if req is not None and status == 0:
        if req.method not in ("GET", "HEAD"):
            status, keep = 405, False
            headers["Allow"] = "GET, HEAD"
        elif req.headers.get("content-length", "0") != "0" or "transfer-encoding" in req.headers:
            status, keep = 400, False  # a GET with a body: not ours to read
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
        body = f"{status} {REASONS[status].lower()}\n".encode()
        headers["Content-Type"] = "text/plain; charset=utf-8"
    if status != 304:
        headers["Content-Length"] = str(len(body))
    headers["Connection"] = "keep-alive" if keep else "close"
    if req is not None and req.method == "HEAD":
        body = b""
    return _head(status, {**common, **headers}) + body, keep


class Server:
    def __init__(
        self, root: Path, context: ssl.SSLContext, read_timeout: float = READ_TIMEOUT_S
    ) -> None:
        self.root = root
        self.read_timeout = read_timeout
        self.files = scan(root)
        self.context = context
        self.open = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            if self.open > MAX_CONNECTIONS:
                writer.write(respond(None, self.files, 503)[0])
                return
            keep = True
            while keep:
                status = 0
                try:
                    req = await asyncio.wait_for(read_request(reader), self.read_timeout)
                except TimeoutError:
                    return  # an idle keep-alive connection, or a slow client: just close
                except _BadRequest as bad:
                    req, status = None, bad.status
                if req is None and status == 0:
                    return
                data, keep = respond(req, self.files, status)
                # In chunks, each drained: a connection buffers at most ~2 chunks.
                view = memoryview(data)
                for start in range(0, len(view), CHUNK):
                    writer.write(view[start : start + CHUNK])
                    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open -= 1
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 2.0)


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
) -> None:
    """Serve until SIGTERM/SIGINT (or cancellation)."""
    server = Server(Path(root), tls_context(cert, key), read_timeout)
    try:
        listener = await asyncio.start_server(
            server.handle,
            host=bind or None,
            port=port,
            ssl=server.context,
            ssl_handshake_timeout=read_timeout,
            limit=MAX_LINE,
            reuse_address=True,
        )
    except OSError as exc:
        where = f"{bind or '*'}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise WebServerError(f"port {port} is taken ({where}): choose another --port") from None
        if exc.errno == errno.EACCES:
            raise WebServerError(f"not allowed to listen on {where}: use a port >= 1024") from None
        raise WebServerError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    addresses = ", ".join(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in listener.sockets)
    log.warning("serving %s (%d files) on https://%s", root, len(server.files), addresses)
    if started is not None:
        started.set()
    async with listener:
        await stop.wait()
    log.warning("stopped")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (1-65535)")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pendant.webserver", description=__doc__.splitlines()[0]
    )
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the app's folder")
    p.add_argument("--cert", type=Path, required=True, help="server certificate (PEM)")
    p.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--bind", default="", help="address to listen on (default: all)")
    p.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_S,
        help=f"seconds for a handshake, or a request, to arrive (default {READ_TIMEOUT_S:g})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="webserver: %(message)s")
    try:
        asyncio.run(
            serve(
                args.root, args.cert, args.key, args.port, args.bind, read_timeout=args.read_timeout
            )
        )
    except WebServerError as exc:
        print(f"webserver: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
