"""HTTP/1.1 for pendant.web.server: requests parsed, and replies framed, by h11.

h11 (pure Python, a dependency of httpx and uvicorn) does the grammar: request line, header
names and values, line endings, a second `Host`, conflicting lengths, chunked framing, and
which connections may stay open; it reads from our own asyncio + TLS streams, so the server
keeps its loop, its TLS and its limits. On top of it, what h11 leaves to its user: our size
limits (it bounds only a head that is still incomplete), no control characters in a value (it
lets most of them through), HTTP/1.0 and 1.1 only. A request's `Content-Length` is the
server's to refuse (`pendant.web.server.respond`): h11 merges a repeated equal one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus

import h11

MAX_LINE = 4096
MAX_HEADERS = 32
MAX_REQUEST = 16384
# Body bytes per write: a connection buffers at most ~2 of them.
CHUNK = 32768
# RFC 9110 5.5: a value is visible characters, spaces and tabs (h11 refuses NUL, CR and LF).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class BadRequest(Exception):
    """A request the server answers with `status` and then closes the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Request:
    """A request's head: header names lower-case, values as sent (latin-1)."""

    method: str
    path: str
    version: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Reply:
    """A response to send, and whether the connection may carry another request after it."""

    status: int
    headers: dict[str, str]
    body: bytes
    keep: bool


class HttpConnection:
    """One connection's HTTP state: its requests read from `reader`, its replies framed."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        # Bounds what h11 buffers while a head is incomplete; `_head` checks a complete one.
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)

    async def next_request(self) -> Request | None:
        """The next request's head; None when the client closed between requests.

        Raises BadRequest (400, 431, 505) for a request that is malformed or too big.
        """
        try:
            while (event := self._h11.next_event()) is h11.NEED_DATA:
                self._h11.receive_data(await self._reader.read(MAX_REQUEST))
        except h11.RemoteProtocolError as exc:
            # h11 hints 501 for a transfer coding other than chunked: a body we refuse anyway.
            raise BadRequest(431 if exc.error_status_hint == 431 else 400) from None
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request), event  # PAUSED only until `next_cycle`
        return _head(event)

    def frame(self, reply: Reply) -> Iterator[bytes | memoryview]:
        """`reply` as bytes to write: its head, then its body in chunks of at most CHUNK."""
        headers = [*reply.headers.items(), ("Connection", "keep-alive" if reply.keep else "close")]
        reason = HTTPStatus(reply.status).phrase
        head = self._h11.send(
            h11.Response(status_code=reply.status, reason=reason, headers=headers)
        )
        assert head is not None
        yield head
        view = memoryview(reply.body)
        for start in range(0, len(view), CHUNK):
            # Passed through, not joined: the file's bytes are not copied for each reply.
            data = h11.Data(data=view[start : start + CHUNK])
            yield from self._h11.send_with_data_passthrough(data) or ()
        self._h11.send(h11.EndOfMessage())

    def next_cycle(self) -> bool:
        """After a reply: True when the connection is ready for another request; False:
        close it (the reply said so, or the client, or HTTP/1.0)."""
        conn = self._h11
        if conn.their_state is h11.SEND_BODY:
            # A request with no body (the only kind kept open) ends here, with no more bytes.
            try:
                conn.next_event()
            except h11.RemoteProtocolError:
                return False
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            return True
        return False


def _head(event: h11.Request) -> Request:
    items = event.headers.raw_items()
    lines = [len(name) + len(value) + 2 for name, value in items]  # "name: value"
    first = len(event.method) + len(event.target) + len(b"  HTTP/1.1")
    if (
        first > MAX_LINE
        or len(lines) > MAX_HEADERS
        or max(lines, default=0) > MAX_LINE
        or first + sum(lines) + 2 * (len(lines) + 2) > MAX_REQUEST
    ):
        raise BadRequest(431)
    if event.http_version not in (b"1.1", b"1.0"):
        raise BadRequest(505)
    if any(_CONTROL.search(value) for _, value in items):
        raise BadRequest(400)
    return Request(
        event.method.decode("ascii"),
        event.target.decode("ascii"),  # h11 lets visible ASCII through, nothing else
        "HTTP/" + event.http_version.decode("ascii"),
        {name.decode("ascii").lower(): value.decode("latin-1") for name, value in items},
    )
