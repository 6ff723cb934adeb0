"""pendant.web.server's rules, without a server running: the Content-Security-Policy, the
pairing offer and the codes of the phones that ask, who may ask for /pair and how often, and
which connection gives way when every slot is taken. Over real TLS connections, the server as
its unit runs it, they are tests/system/test_webserver.py's."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from tests.support.web_support import MAX_CONNECTIONS, MAX_PER_SOURCE
from tests.support.web_support import policy as csp_policy


def test_the_policy_lets_the_page_reach_the_websocket_and_nothing_foreign() -> None:
    from pendant.web.server import csp

    policy = csp_policy(csp("pendant-ab12cd.local:8443"))
    # Its own origin, and a WebSocket to the host it came from (the broker's port is its own):
    # `wss:` alone would let a script send what the page shows to any host.
    assert policy["connect-src"] == ["'self'", "wss://pendant-ab12cd.local:*"]
    for key in ("default-src", "script-src", "style-src", "worker-src"):
        assert policy[key] == ["'self'"], key
    assert policy["frame-ancestors"] == ["'none'"]


def test_a_pairing_offer_is_checked_before_it_reaches_a_page() -> None:
    from pendant.core.events import PairingOffer
    from pendant.web.pair_desk import parse_offer

    offer = PairingOffer(device_id="dev", user="phone-ab12cd",
                         fragment="u=phone-ab12cd&p=x-Y_z&d=dev&w=8884", expires_ms=1)  # fmt: skip
    good = json.loads(offer.to_json())
    assert parse_offer(json.dumps(good).encode()) is not None
    assert parse_offer(b"") is None  # cleared
    for bad in ({"fragment": 'u=a"><script>'}, {"user": "link"}, {"type": "status"},
                {"expires_ms": "1"}, {"device_id": "../x"}, {"id": "X" * 32},
                {"version": 2}, {"timestamp_ms": -1}, {"extra": 1}):  # fmt: skip
        assert parse_offer(json.dumps({**good, **bad}).encode()) is None, bad
    assert parse_offer(b"[" * 5000) is None


def test_each_asking_address_gets_a_code_of_its_own() -> None:
    """Issue 14: the wearer accepts a phone by pressing the code only its page shows, so the
    codes of one offer's askers are distinct, at most `PAIR_CODES` addresses ask (more are
    told so), each request carries its code to the pairing service, and once the wearer chose,
    only the chosen phone (with its page's token) gets the login."""
    from pendant.core import events
    from pendant.web import pair_desk

    assert pair_desk.PAIR_CODES == events.PAIRING_CODES
    until_ms = time.time_ns() // 1_000_000 + 60_000
    offer = pair_desk.Offer("dev", "phone-ab12cd", "u=phone-ab12cd&p=x&d=dev&w=1", until_ms)
    desk = pair_desk.PairingDesk("/nonexistent", "pw")
    desk.offer = offer
    sources = [f"192.168.1.{n}" for n in range(10, 10 + pair_desk.PAIR_CODES)]
    asks = {source: desk.ask(source, None).waiting for source in sources}
    assert all(ask is not None for ask in asks.values())
    codes = sorted(ask.code for ask in asks.values() if ask is not None)
    assert codes == list(range(1, pair_desk.PAIR_CODES + 1))
    assert desk.ask(sources[0], None).waiting == asks[sources[0]]  # the same phone again
    assert desk.asking() == frozenset(sources)
    full = desk.ask("192.168.1.99", None)
    assert full.full and full.waiting is None and full.offer is None
    page = pair_desk.pair_page(None, full=True).decode()
    assert "too many" in page and "refresh" not in page
    # Reported on the bus with its code, and its page shows it.
    requests = [pair_desk.pairing_request(o, a) for o, a in desk._requests]
    for request in requests:
        events.parse_event(json.dumps(request).encode())
    chosen = asks[sources[2]]
    assert chosen is not None
    assert f'<strong id="code">{chosen.code}</strong>' in pair_desk.pair_page(None, chosen).decode()

    # The wearer pressed the third phone's code: the others (and newcomers) get nothing.
    desk.offer = dataclasses.replace(offer, requester=chosen.requester)
    first = asks[sources[0]]
    assert first is not None and desk.ask(sources[0], first.token).offer is None
    assert desk.ask("192.168.1.98", None) == pair_desk.PairAnswer()
    assert desk.ask(sources[2], "0" * 32).offer is None  # the right address, not its token
    handed = desk.ask(sources[2], chosen.token).offer
    assert handed is not None and handed.requester == chosen.requester
    assert desk.ask(sources[2], chosen.token).offer is None  # once


# --- /pair: local addresses only, and the asking phone's connections kept ------------------


@pytest.mark.parametrize(
    ("source", "status"),
    [
        ("127.0.0.1", 200),
        ("192.168.1.20", 200),
        ("10.1.2.3", 200),
        ("169.254.7.7", 200),
        ("fe80::1", 200),
        ("fd00::5", 200),
        ("93.184.216.34", 403),
        ("8.8.8.8", 403),
        ("2001:4860:4860::8888", 403),
        ("", 403),
        # "Private" to Python's ipaddress, reachable from the internet or not a home's:
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", 403),  # Teredo, a tunnel through NAT
        ("2001:db8::1", 403),  # documentation
        ("198.18.0.1", 403),  # benchmarking
        ("::ffff:8.8.8.8", 403),
        ("::ffff:192.168.1.20", 200),
    ],
)
def test_pair_answers_the_pendants_own_network_only(source: str, status: int) -> None:
    """Issue 14, item 1: `/pair` answered any address. Only a phone on the pendant's own
    network (private, link-local, loopback) may ask to pair; the app's files stay public.
    (Unit level: no test machine can connect from a public address.)"""
    from pendant.web import server as webserver

    pair = webserver.Request("GET", "/pair", "HTTP/1.1", {"host": "pendant.local"})
    assert webserver.respond(pair, {}, source=source).status == status


def test_pair_rate_counts_an_ipv6_host_by_its_slash_64() -> None:
    """A host picks any address in its /64 at will: counted per address, a flood of /pair
    requests would never be limited."""
    from pendant.web import pair_desk
    from pendant.web import server as webserver

    limit = pair_desk.RateLimit()
    pair = webserver.Request("GET", "/pair", "HTTP/1.1", {"host": "pendant.local"})
    statuses = [
        webserver.respond(pair, {}, source=f"fd00:1:2:3::{n:x}", limit=limit).status
        for n in range(1, 40)
    ]
    assert 429 in statuses
    # Another /64 (another host on the network) still gets its answer.
    assert webserver.respond(pair, {}, source="fd00:1:2:4::1", limit=limit).status == 200


def test_the_phone_that_asks_to_pair_keeps_its_connections(tmp_path: Path) -> None:
    """Issue 14, item 1 ("keep a slot for /pair"): when every slot is taken, a newcomer takes
    the place of the stalest connection of the address with the most; the phone waiting for
    the wearer's press is never that one while another connection can go."""
    import ssl as ssl_module
    from types import SimpleNamespace

    from pendant.web import server as webserver

    (tmp_path / "notes.txt").write_text("notes\n")
    phone = "192.168.1.20"
    desk = SimpleNamespace(asking=lambda: frozenset({phone}))
    server = webserver.Server(
        tmp_path,
        ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_SERVER),
        pairing=desk,  # type: ignore[arg-type]
    )
    sources = [phone] + [f"192.168.1.{30 + n}" for n in range(MAX_CONNECTIONS // MAX_PER_SOURCE)]
    for n in range(MAX_CONNECTIONS):
        # The phone's connections are the stalest of all, and its address has the most.
        conn = webserver._Connection(sources[n % len(sources)], None, active_s=float(n))
        conn.handshaking = False
        server.connections.append(conn)
    assert server.open == MAX_CONNECTIONS
    newcomer = webserver._Connection("192.168.1.99", None, active_s=100.0)
    assert server.admit(newcomer) == []
    left = [c.source for c in server.connections]
    assert left.count(phone) == sum(1 for n in range(MAX_CONNECTIONS) if n % len(sources) == 0)


def test_the_hand_built_pairing_events_are_the_pydantic_ones() -> None:
    """The web server writes and reads its pairing events without pydantic (its unit's
    memory): what it writes parses as the components' events, field for field, and what it
    takes as an offer is one the pydantic model takes too, so the two cannot drift."""
    from pendant.core import events
    from pendant.web import pair_desk

    until_ms = time.time_ns() // 1_000_000 + 60_000
    offer = pair_desk.Offer("dev", "phone-ab12cd", "u=phone-ab12cd&p=x&d=dev&w=1", until_ms)
    ask = pair_desk.Ask("a" * 32, "token", 3)
    request = events.parse_event(json.dumps(pair_desk.pairing_request(offer, ask)).encode())
    assert isinstance(request, events.PairingRequest)
    assert (request.device_id, request.user, request.requester, request.code) == (
        "dev", "phone-ab12cd", "a" * 32, 3)  # fmt: skip
    taken = events.parse_event(json.dumps(pair_desk.pairing_taken(offer)).encode())
    assert isinstance(taken, events.PairingTaken)
    assert (taken.device_id, taken.user) == ("dev", "phone-ab12cd")

    # The pairing service's offers, with and without the accepted request, read as sent.
    for requester in (None, "b" * 32):
        sent = events.PairingOffer(device_id="dev", user="phone-ab12cd", fragment=offer.fragment,
                                   expires_ms=until_ms, requester=requester)  # fmt: skip
        read = pair_desk.parse_offer(sent.to_json())
        assert read == pair_desk.Offer("dev", "phone-ab12cd", offer.fragment, until_ms, requester)
    # Whatever the web server takes for an offer, the pydantic model takes too.
    good = json.loads(sent.to_json())
    variants = [{"user": "phone-"}, {"user": "phone-a-"}, {"fragment": ""},
                {"fragment": "a" * 1001}, {"fragment": "a b"}, {"requester": "B" * 32},
                {"requester": 5}, {"expires_ms": 2**53 + 1}, {"expires_ms": 1.5},
                {"expires_ms": True}, {"device_id": "-x"}, {"device_id": "a" * 33},
                {"timestamp_ms": 2**53 + 1}, {"version": True}, {"id": "a" * 31}]  # fmt: skip
    for change in variants:
        payload = json.dumps({**good, **change}).encode()
        if pair_desk.parse_offer(payload) is not None:
            events.parse_event(payload)  # raises if the web server took what it must not
    missing = [k for k in good if k != "requester"]
    for key in missing:
        payload = json.dumps({k: v for k, v in good.items() if k != key}).encode()
        assert pair_desk.parse_offer(payload) is None, key
