"""One JSON request over HTTP/1.1, for the link's chat target (`pendant.link.ask_openai`).

Framed by h11 (as the web server's requests are) on asyncio's own streams, so the link needs
no HTTP client library: a POST with a JSON body, one reply, the connection closed. The reply
is bounded (`MAX_REPLY_BYTES`); anything that is not a JSON object with a 2xx status is an
`AskError` of one line. The caller bounds the time.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import h11

from pendant.core.errors import PendantError

MAX_REPLY_BYTES = 256 * 1024
"""A chat reply is a few KiB; a server that sends more is not one we understand."""


class AskError(PendantError):
    """The target could not be reached, refused, or answered in a form not understood."""


def _where(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


async def post_json(
    url: str,
    body: dict[str, Any],
    *,
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, dict[str, Any]]:
    """POSTs `body` as JSON to `url`; the status and the JSON object the server answered."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AskError(f"escalate.url must be an http:// or https:// address, not {url[:80]!r}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    where = _where(url)
    if https and tls is None:
        tls = ssl.create_default_context()
    try:
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=tls if https else None, limit=MAX_REPLY_BYTES
        )
    except ssl.SSLError as exc:
        raise AskError(f"{where}: TLS failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise AskError(f"cannot reach {where}: {exc.strerror or exc}") from None
    try:
        return await _exchange(reader, writer, parts, body, token, where)
    finally:
        # Aborted, not closed: a TLS goodbye would wait on the server, past the caller's bound.
        writer.transport.abort()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    parts: Any,
    body: dict[str, Any],
    token: str | None,
    where: str,
) -> tuple[int, dict[str, Any]]:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=16384)
    data = json.dumps(body).encode()
    host = parts.netloc.rpartition("@")[2]
    headers = [
        ("Host", host),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("Accept", "application/json"),
        ("Connection", "close"),
        ("User-Agent", "pendant-link"),
    ]
    if token:
        headers.append(("Authorization", f"Bearer {token}"))
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)))
    writer.write(conn.send(h11.Data(data=data)))
    writer.write(conn.send(h11.EndOfMessage()))
    try:
        await writer.drain()
        status = 0
        content = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                chunk = await reader.read(65536)
                conn.receive_data(chunk)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                content += event.data
                if len(content) > MAX_REPLY_BYTES:
                    raise AskError(f"{where} answered with more than {MAX_REPLY_BYTES} bytes")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except h11.RemoteProtocolError as exc:
        raise AskError(f"{where} does not speak HTTP/1.1 ({exc})") from None
    except (OSError, ssl.SSLError) as exc:
        raise AskError(f"{where} dropped the connection: {exc}") from None
    if status == 0:
        raise AskError(f"{where} closed the connection without an answer")
    try:
        reply = json.loads(content)
    except (ValueError, RecursionError):
        if 200 <= status < 300:
            raise AskError(f"{where} answered HTTP {status} with something not JSON") from None
        reply = {}
    if not isinstance(reply, dict):
        raise AskError(f"{where} answered HTTP {status} with JSON that is not an object")
    return status, reply
