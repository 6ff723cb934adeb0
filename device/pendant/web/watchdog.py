"""pendant-web's watchdog: pinged while the server still accepts connections.

The server's work is accepting connections, and a server nobody visits accepts none; so a
probe connects to the server's own listener every `interval / 4`, and every connection the
accept loop hands over (the probe's or a phone's) beats the heartbeat. The kernel completes a
TCP handshake into the backlog whether or not the server accepts, so the probe's connect proves
nothing by itself: only the accept does. A listener that is closed, an accept loop that has
stopped (out of file descriptors, say) or a blocked event loop stop the beats, the pings
stop, and systemd restarts the unit (WatchdogSec= in services/pendant-web.service).

A flood of connections cannot get the server restarted: each one is an accept, and a beat.
Without $WATCHDOG_USEC (not under systemd, or no WatchdogSec=) nothing runs at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pendant.core import systemd as notify

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Where a server listening on every address is reached from itself.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def beating(handler: Handler, heartbeat: notify.Heartbeat) -> Handler:
    """`handler`, beating `heartbeat` first on every connection the accept loop hands it."""

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heartbeat.beat()
        await handler(reader, writer)

    return accepted


def probe_address(listener: asyncio.Server) -> tuple[str, int]:
    """Where to reach `listener` from this host: its first socket, loopback for a wildcard."""
    host, port = listener.sockets[0].getsockname()[:2]
    return _LOOPBACK.get(host, host), int(port)


async def probe(address: tuple[str, int], period_s: float) -> None:
    """Connect to `address` every `period_s` and hang up at once; failures are only logged.

    The server's handler sees the hang-up during its TLS handshake and drops the connection.
    """
    failing = False
    while True:
        try:
            async with asyncio.timeout(period_s):
                _, writer = await asyncio.open_connection(*address)
            writer.transport.abort()
            failing = False
        except (OSError, TimeoutError) as exc:
            if not failing:  # one line per failure, not one per probe
                log.error("self-check: cannot connect to %s:%d (%s)", *address, exc)
            failing = True
        await asyncio.sleep(period_s)
