"""What the web server's tests share: its limits written out, and the CSP header read apart."""

from __future__ import annotations

# The server's limits (pendant.web.server): 32 connections, 8 per address, 16 handshakes, 100
# requests per connection. Written out, so that a change to them is a change to the tests.
MAX_CONNECTIONS = 32
MAX_PER_SOURCE = 8
MAX_HANDSHAKES = 16
MAX_REQUESTS = 100


def policy(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as directive -> its sources."""
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in header.split(";"))}
