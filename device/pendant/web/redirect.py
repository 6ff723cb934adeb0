"""Plain HTTP for pendant.web.server: every request is sent on to the app over HTTPS.

A phone's browser tries `http://` first when the wearer types `pendant.local` (or a QR
sticker says so): this listener answers each GET or HEAD with `307 Temporary Redirect` to
`https://<the host the browser asked for>:<the app's port><the same path>`, and anything
else with 405; it serves no file and reads no body. 307, not 301, so no browser remembers the
port for good. The host is the request's `Host` (its port replaced), when that is a plain
name or address; else the address the connection came in on. A target that is not a path
(`http://elsewhere/`, `*`) is sent to `/`, so the redirect never leads to another host.

On the device the port is 80, which only root may bind: `pendant-web-http.socket` binds it and
systemd hands the socket to pendant-web (`listen_fds`, named `http`), so the web server itself
keeps no capability. Elsewhere `--http-port` binds one itself.

Bounded as the HTTPS side is: requests are parsed by h11 with the same limits
(`pendant.web.http`), a connection gets `READ_TIMEOUT_S` to send its one request, and at most
`MAX_CONNECTIONS` are open: a newcomer takes the place of the oldest, so a flood of silent
connects holds a bounded amount of memory and cannot keep a phone out for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import os
import re
import socket
from collections.abc import Iterator

from pendant.web.http import BadRequest, HttpConnection, Reply

READ_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 16
# The name systemd gives the socket (FileDescriptorName= in pendant-web-http.socket).
FD_NAME = "http"
# sd_listen_fds(3): passed descriptors start at 3.
LISTEN_FDS_START = 3
# A Host header that is a plain name, an IPv4 address or a bracketed IPv6 literal, with an
# optional port: nothing that could add a header or leave the URL's authority.
_HOST = re.compile(
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::[0-9]{1,5})?"
)


def listen_fds(name: str = FD_NAME) -> list[socket.socket]:
    """The listening sockets systemd passed this process under `name` (sd_listen_fds(3)), as
    socket objects; [] when it passed none. The environment is cleared, so that a child
    process never takes them for its own."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        count = 0
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    out = []
    for i in range(count):
        fd = LISTEN_FDS_START + i
        if i < len(names) and names[i] == name:
            os.set_inheritable(fd, False)
            out.append(socket.socket(fileno=fd))
    return out


def _authority(host: str) -> str | None:
    """`host` (a Host header) without its port, if it is a plain name or address."""
    match = _HOST.fullmatch(host)
    if match is None:
        return None
    value = match.group("host")
    if value.startswith("["):
        try:
            ipaddress.IPv6Address(value[1:-1])
        except ValueError:
            return None
    return value.lower()


def _local_authority(sockname: object) -> str | None:
    """The address a connection came in on, as a URL's host (None: one no URL can name,
    such as a link-local IPv6 address with its interface)."""
    if not isinstance(sockname, tuple) or not sockname:
        return None
    address = str(sockname[0]).removeprefix("::ffff:")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        return None if ip.is_link_local else f"[{ip}]"
    return str(ip)


def location(host: str | None, target: str, https_port: int, sockname: object = None) -> str | None:
    """Where a request for `target` with Host `host` is sent: the same host (its port replaced
    by `https_port`), the same path and query; None when neither the Host nor the local
    address names a host."""
    authority = _authority(host or "") or _local_authority(sockname)
    if authority is None:
        return None
    path = target if target.startswith("/") and not target.startswith("//") else "/"
    return f"https://{authority}:{https_port}{path}"


def reply(method: str, target: str, host: str | None, https_port: int, sockname: object) -> Reply:
    """The answer to one request; the connection closes after it."""
    headers = {
        "Date": email.utils.formatdate(usegmt=True),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Type": "text/plain; charset=utf-8",
    }
    where = location(host, target, https_port, sockname)
    if method not in ("GET", "HEAD"):
        status, body = 405, b"405 method not allowed\n"
        headers["Allow"] = "GET, HEAD"
    elif where is None:
        status, body = 400, b"400 bad request: no host to send you to\n"
    else:
        status, body = 307, f"The pendant's app is at {where}\n".encode()
        headers["Location"] = where
    headers["Content-Length"] = str(len(body))
    return Reply(status, headers, b"" if method == "HEAD" else body, keep=False)


class Redirector:
    """Accepts plain HTTP connections and answers each one request with a redirect."""

    def __init__(self, https_port: int, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.https_port = https_port
        self.read_timeout_s = read_timeout_s
        # Open connections' tasks, oldest first (a dict: ordered, and O(1) to remove).
        self._open: dict[asyncio.Task[None], None] = {}

    @property
    def open(self) -> int:
        """The connections open now."""
        return len(self._open)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._open) >= MAX_CONNECTIONS:
            oldest = next(iter(self._open))
            del self._open[oldest]
            oldest.cancel()
        self._open[task] = None
        try:
            await self._serve(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._open.pop(task, None)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = HttpConnection(reader)
        sockname = writer.get_extra_info("sockname")
        try:
            async with asyncio.timeout(self.read_timeout_s):
                req = await http.next_request()
        except BadRequest as bad:
            answer = Reply(bad.status, {"Content-Length": "0"}, b"", keep=False)
        else:
            if req is None:
                return
            host = req.headers.get("host")
            answer = reply(req.method, req.path, host, self.https_port, sockname)
        for data in http.frame(answer):
            writer.write(data)
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await writer.drain()
        # Sent whole before the close (abort() would drop what the kernel has not sent).
        writer.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.wait_closed()


async def start(
    redirector: Redirector,
    sockets: list[socket.socket],
    port: int | None,
    bind: str | None,
) -> list[asyncio.Server]:
    """Listen on the `sockets` systemd passed, else on `port` (neither: no plain HTTP at
    all, []). OSError when the port cannot be bound."""
    if sockets:
        return [await asyncio.start_server(redirector.handle, sock=s) for s in sockets]
    if port is None:
        return []
    server = await asyncio.start_server(
        redirector.handle, host=bind or None, port=port, reuse_address=True
    )
    return [server]


def addresses(servers: list[asyncio.Server]) -> Iterator[str]:
    """Where `servers` listen, as host:port."""
    for server in servers:
        for s in server.sockets:
            name = s.getsockname()
            yield f"{name[0]}:{name[1]}"
