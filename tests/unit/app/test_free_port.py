"""The ports the private brokers and the tests listen on."""

from __future__ import annotations

import socket

import pytest

from pendant.app.local_broker import EPHEMERAL_RANGE, LOWEST_PORT, free_port


def test_a_free_port_is_outside_the_range_clients_connect_from() -> None:
    """A port an outgoing connection can take as its own end is one a second test's client may
    hold by the time the broker binds it (CI: "Unable to create websockets listener")."""
    low, high = (int(p) for p in EPHEMERAL_RANGE.read_text().split())
    if low - LOWEST_PORT < 1000:
        pytest.skip(f"the kernel's range starts at {low}: free_port falls back to any port")
    ports = {free_port() for _ in range(20)}
    assert all(not low <= p <= high for p in ports), (ports, low, high)
    assert len(ports) > 1  # chosen at random, so two callers seldom meet
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
