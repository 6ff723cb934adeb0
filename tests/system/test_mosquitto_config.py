"""The device-local mosquitto config and its provisioning, proved against real mosquitto.

Each broker here runs exactly the config `pendant.setup.provision` renders from
services/mosquitto/*.in (paths, ports and the run-as user templated into a scratch root),
and real MQTT clients (paho) check each rule over the listener a real client would use: the
unix socket for services, TLS and WebSocket-over-TLS (with the generated CA) for phones.

"Nothing arrives" is never a timed wait. A denied publish is followed by a *fence*: a
permitted message that the same watcher must receive. mosquitto routes a client's messages
in order and acknowledges a QoS 1 publish only after routing it, so once the fence has
arrived, a forbidden message that had been delivered would already be in the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pendant.app.local_broker import LocalBroker, free_port
from pendant.core import state as durable
from pendant.core.supervise import Readiness
from pendant.pairing import accounts as pairing
from pendant.setup.provision import (
    SERVICE_USERS,
    Layout,
    Provisioned,
    ProvisionError,
    openssl_config,
    provision,
    render,
)
from tests.support.mosquitto_support import (
    DEVICE,
    ME,
    TIMEOUT_S,
    Client,
    Endpoint,
    Msg,
    _accepted_eventually,
    _provision_for_test,
    attempt,
    endpoint,
    needs_mosquitto,
    running,
)
from tests.support.tasks import within

pytestmark = needs_mosquitto

# The template's max_packet_size, and the largest event the pendant sends.
MAX_PACKET = 16384
LARGEST_EVENT = 8192


Connect = Callable[..., Client]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """connect(prov, user, via="unix") -> a connected Client, closed after the test."""
    opened: list[Client] = []

    def _connect(prov: Provisioned, user: str, via: str = "unix") -> Client:
        c = Client(endpoint(prov, via), user, prov.password(user))
        opened.append(c)
        rc = c.open()
        assert not rc.is_failure, f"{user} refused on {via}: {rc}"
        return c

    yield _connect
    for c in opened:
        c.close()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    """One provisioned pendant broker with two paired phones, running for the module."""
    prov = _provision_for_test(tmp_path_factory.mktemp("dev"), add_phones=("alice", "bob"))
    with running(prov):
        yield prov


def topics(messages: list[Msg]) -> list[str]:
    return [m[0] for m in messages]


# --- who may connect -----------------------------------------------------------------------


@pytest.mark.parametrize(("via", "user"), [("unix", "link"), ("tls", "phone-alice"),
                                           ("ws", "phone-alice")])  # fmt: skip
def test_anonymous_and_wrong_passwords_are_refused(
    device: Provisioned, via: str, user: str
) -> None:
    """Proves allow_anonymous false and the password file on every listener, with the right
    password accepted on the same listener (so a refusal is the rule, not a dead listener)."""
    where = endpoint(device, via)
    assert attempt(where, None, None).is_failure
    assert attempt(where, user, "not-the-password").is_failure
    assert attempt(where, "nobody", device.password(user)).is_failure
    assert not attempt(where, user, device.password(user)).is_failure


@pytest.mark.parametrize("via", ["tls", "ws"])
def test_phone_listeners_present_the_devices_own_certificate(device: Provisioned, via: str) -> None:
    """Proves the phone listeners are TLS with the provisioned certificate: a client trusting
    only the public CAs refuses it, so the generated CA is what vouches for it."""
    c = Client(endpoint(device, via), "phone-alice", device.password("phone-alice"), True)
    with pytest.raises(ssl.SSLError):
        c.paho.connect("127.0.0.1", endpoint(device, via).port, keepalive=30)
    c.close()


# --- the ACL -------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["tls", "ws"])
def test_phone_cannot_publish_an_intent(device: Provisioned, connect: Connect, via: str) -> None:
    """Proves phones cannot forge public events: alice's intent never reaches bob, who does
    receive the same intent from the link."""
    alice = connect(device, "phone-alice", via)
    bob = connect(device, "phone-bob", "tls")
    link = connect(device, "link")
    bob.subscribe(f"pendant/{DEVICE}/#")
    # Acknowledged, so routed: had it reached bob, it would be ahead of the link's fence.
    alice.publish(f"pendant/{DEVICE}/intent/HassTurnOn", b'{"forged": true}')
    assert bob.fence(link, f"pendant/{DEVICE}/intent/HassTurnOn") == []


@pytest.mark.parametrize("via", ["tls", "ws"])
def test_a_phone_cannot_tap_the_pendant(device: Provisioned, connect: Connect, via: str) -> None:
    """Proves the tap that confirms a phone's voice request (issue 19: forgetting a voice,
    enrolling another) comes from the body alone: a phone's publish to the bus's button topic
    never reaches the ears, who do receive the body's."""
    ears = connect(device, "ears")
    body = connect(device, "body")
    phone = connect(device, "phone-alice", via)
    ears.subscribe("pendant-bus/button")
    # Acknowledged, so routed: had it reached the ears, it would be ahead of the body's fence.
    phone.publish("pendant-bus/button", b'{"type": "button", "action": "tap"}')
    assert ears.fence(body, "pendant-bus/button") == []


@pytest.mark.parametrize("via", ["tls", "ws"])
def test_phone_command_reaches_the_link(device: Provisioned, connect: Connect, via: str) -> None:
    """Proves the one thing a phone may write, a command, arrives at the link."""
    link = connect(device, "link")
    link.subscribe(f"pendant/{DEVICE}/cmd/#")
    phone = connect(device, "phone-alice", via)
    phone.publish(f"pendant/{DEVICE}/cmd/mute", b'{"mic": true}')
    assert link.until(f"pendant/{DEVICE}/cmd/mute", b'{"mic": true}') == []


def test_phone_reads_public_topics_but_not_the_bus(device: Provisioned, connect: Connect) -> None:
    """Proves phones read this device's intents and the Hermes mirror, while an event on the
    internal bus (which the link does receive) never reaches them."""
    phone = connect(device, "phone-alice", "tls")
    link = connect(device, "link")
    ears = connect(device, "ears")
    phone.subscribe(f"pendant/{DEVICE}/intent/#", "hermes/intent/#", "pendant-bus/#")
    link.subscribe("pendant-bus/#")

    link.publish(f"pendant/{DEVICE}/intent/HassTurnOff", b"{}")
    assert phone.until(f"pendant/{DEVICE}/intent/HassTurnOff", b"{}") == []
    link.publish("hermes/intent/HassTurnOff", b"{}")
    assert phone.until("hermes/intent/HassTurnOff", b"{}") == []

    ears.publish("pendant-bus/intent", b'{"internal": 1}')
    assert link.until("pendant-bus/intent", b'{"internal": 1}') == []
    assert phone.fence(link, f"pendant/{DEVICE}/intent/Fence") == []


def test_links_last_will_reaches_phones(device: Provisioned, connect: Connect) -> None:
    """Proves the ACL lets the broker publish the link's last will (availability, retained):
    when the link vanishes without a goodbye, phones read "offline"."""
    phone = connect(device, "phone-alice", "ws")
    phone.subscribe(f"pendant/{DEVICE}/availability")
    link = Client(endpoint(device, "unix"), "link", device.password("link"))
    link.paho.will_set(f"pendant/{DEVICE}/availability", b"offline", qos=1, retain=True)
    try:
        assert not link.open().is_failure
        link.publish(f"pendant/{DEVICE}/availability", b"online", retain=True)
        assert phone.until(f"pendant/{DEVICE}/availability", b"online") == []
        # A crash, as the broker sees it: the connection ends with no DISCONNECT.
        link.paho.loop_stop()
        sock = link.paho.socket()
        assert sock is not None
        sock.close()
        assert phone.until(f"pendant/{DEVICE}/availability", b"offline") == []
    finally:
        link.close()
        # The module's broker is shared: clear the retained will so no later watcher sees it.
        connect(device, "link").publish(f"pendant/{DEVICE}/availability", b"", retain=True)


ALLOWED = {"ears": "pendant-bus/intent", "eyes": "pendant-bus/scene", "body": "pendant-bus/button"}
# What each may also write, by design: the eyes publish intents of their own (what the camera
# read), on their own topic, the body turns gestures into bus commands (mute, capture), asks
# for the pairing window and accepts the phone that asks to pair; the ears ask a bigger model
# (issue 18) what the closed set cannot hear.
ALSO_WRITES = {
    "ears": {"pendant-bus/ask"},
    "eyes": {"pendant-bus/eyes/intent"},
    "body": {
        "pendant-bus/cmd/mute",
        "pendant-bus/pairing_window",
        "pendant-bus/pairing_confirm",
    },
}


@pytest.mark.parametrize("service", ["ears", "eyes", "body"])
def test_services_publish_only_their_internal_events(
    device: Provisioned, connect: Connect, service: str
) -> None:
    """Proves a service can publish its own internal event and nothing else: no public or
    Hermes topic (only the link speaks outside) and no command on the bus (only the link
    relays commands)."""
    svc = connect(device, service)
    link = connect(device, "link")
    phone = connect(device, "phone-bob", "tls")
    link.subscribe("pendant-bus/#")
    phone.subscribe(f"pendant/{DEVICE}/#", "hermes/intent/#")
    forbidden = [
        t
        for t in (
            f"pendant/{DEVICE}/intent/X",
            f"pendant/{DEVICE}/status",
            "hermes/intent/X",
            "pendant-bus/cmd/mute",
            "pendant-bus/error",
            # The pairing window is the pairing service's and the web server's alone.
            "pendant-bus/pairing_window",
            "pendant-bus/pairing_status",
            "pendant-bus/pairing_offer",
            "pendant-bus/pairing_taken",
            "pendant-bus/pairing_request",
            "pendant-bus/pairing_confirm",
            "pendant-bus/eyes/intent",
            # Where the link stands (the LED): the link's alone.
            "pendant-bus/link_state",
            # What the link asks a bigger model: the ears' alone.
            "pendant-bus/ask",
            *(t for s, t in ALLOWED.items() if s != service),
        )
        if t not in ALSO_WRITES[service]
    ]
    for t in forbidden:
        svc.publish(t, b"{}")
    # Its own event is the fence: delivered, and nothing forbidden before it.
    assert link.fence(svc, ALLOWED[service]) == []
    assert phone.fence(link, f"pendant/{DEVICE}/transcript") == []


def test_ears_hears_the_button_and_commands_but_not_public_topics(
    device: Provisioned, connect: Connect
) -> None:
    """Proves the read side for a service: ears receives the button and bus commands, but not
    a public event (so it cannot learn what the link publishes or phones send)."""
    ears = connect(device, "ears")
    body = connect(device, "body")
    link = connect(device, "link")
    ears.subscribe("pendant-bus/button", "pendant-bus/cmd/#", f"pendant/{DEVICE}/#")
    body.publish("pendant-bus/button", b"{}")
    link.publish(f"pendant/{DEVICE}/status", b"{}")
    assert ears.fence(link, "pendant-bus/cmd/mute") == [("pendant-bus/button", b"{}", False)]


def test_the_body_hears_what_the_ears_made_of_the_words(
    device: Provisioned, connect: Connect
) -> None:
    """Proves the body reads the ears' intents and not_recognized (its "understood" and "not
    understood" buzzes, issue 15), and still no public topic."""
    body = connect(device, "body")
    ears = connect(device, "ears")
    link = connect(device, "link")
    body.subscribe(
        "pendant-bus/intent",
        "pendant-bus/not_recognized",
        "pendant-bus/cmd/#",
        f"pendant/{DEVICE}/#",
    )
    ears.publish("pendant-bus/intent", b'{"i": 1}')
    ears.publish("pendant-bus/not_recognized", b'{"n": 1}')
    link.publish(f"pendant/{DEVICE}/intent/HassTurnOn", b"{}")
    assert body.fence(link, "pendant-bus/cmd/buzz") == [
        ("pendant-bus/intent", b'{"i": 1}', False),
        ("pendant-bus/not_recognized", b'{"n": 1}', False),
    ]


def test_only_the_link_says_where_it_stands_and_the_body_hears_it(
    device: Provisioned, connect: Connect
) -> None:
    """Proves the link may write `link_state` (the LED's setting up / no Wi-Fi / no broker /
    ready), the body reads it, and the pairing service and the web server, which no other
    test tries it with, may not write it; nor may a phone read it."""
    body = connect(device, "body")
    link = connect(device, "link")
    phone = connect(device, "phone-bob", "tls")
    body.subscribe("pendant-bus/link_state")
    phone.subscribe("pendant-bus/#", f"pendant/{DEVICE}/#")
    for user in ("pairing", "web"):
        connect(device, user).publish("pendant-bus/link_state", user.encode())
    link.publish("pendant-bus/link_state", b"link")
    assert body.until("pendant-bus/link_state", b"link") == []
    assert phone.fence(link, f"pendant/{DEVICE}/transcript") == []
    # Cleared: the module's broker is shared.
    link.publish("pendant-bus/link_state", b"", retain=True)


def test_only_the_ears_ask_and_the_body_hears_it_and_the_links_buzz(
    device: Provisioned, connect: Connect
) -> None:
    """Proves the body reads the ears' `ask` (the LED's "asking", issue 18) and the link's
    `cmd/buzz` that ends it, and may not write `ask` itself; nor may the link (which sends it
    on), the pairing service or the web server, which no other test tries it with."""
    body = connect(device, "body")
    ears = connect(device, "ears")
    link = connect(device, "link")
    assert not any(rc.is_failure for rc in body.subscribe("pendant-bus/ask", "pendant-bus/cmd/#"))
    for user in ("body", "link", "pairing", "web"):
        connect(device, user).publish("pendant-bus/ask", user.encode())
    ears.publish("pendant-bus/ask", b"ears")
    assert body.fence(link, "pendant-bus/cmd/buzz") == [("pendant-bus/ask", b"ears", False)]


@pytest.mark.parametrize(("via", "user", "topic", "watch"), [
    ("unix", "link", "pendant-bus/cmd/say", "pendant-bus/#"),
    ("tls", "phone-alice", f"pendant/{DEVICE}/cmd/say", f"pendant/{DEVICE}/cmd/#"),
])  # fmt: skip
def test_oversized_packet_is_refused(
    device: Provisioned, connect: Connect, via: str, user: str, topic: str, watch: str
) -> None:
    """Proves max_packet_size: an event of the largest size we send gets through, a packet over
    the limit disconnects its sender and reaches no one."""
    watcher = connect(device, "link")
    watcher.subscribe(watch)
    sender = connect(device, user, via)
    fits = b"x" * LARGEST_EVENT
    sender.publish(topic, fits)
    assert watcher.until(topic, fits) == []

    sender.paho.publish(topic, b"y" * (MAX_PACKET + 1), qos=0)
    assert sender.disconnected.wait(TIMEOUT_S), "sender of an oversized packet still connected"
    sender.close()
    fence_by = connect(device, "ears" if via == "unix" else "phone-bob", via)
    fence_topic = "pendant-bus/intent" if via == "unix" else f"pendant/{DEVICE}/cmd/fence"
    assert watcher.fence(fence_by, fence_topic) == []


# --- a flood of connects (issue 14 item 13) ------------------------------------------------

# The template's max_connections on the phones' TLS listener, and its memory_limit.
PHONE_MAX_CONNECTIONS = 32
MEMORY_LIMIT = 32 * 1024 * 1024


def _closed_by_broker(sock: socket.socket) -> bool:
    """Whether the broker closed `sock` (EOF or a reset); a silent open one would block."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_a_flood_of_connects_to_the_tls_listener_is_cut_before_the_login(
    tmp_path: Path, connect: Connect
) -> None:
    """Silent TCP connects to the phones' TLS port (no TLS, no CONNECT) used to be kept, every
    one: 4000 took mosquitto from 11 to 242 MB. Past max_connections it closes them at once,
    and the services' socket is untouched."""
    prov = _provision_for_test(tmp_path)
    conf = prov.conf.read_text()
    assert f"\nmemory_limit {MEMORY_LIMIT}\n" in conf
    assert conf.count(f"\nmax_connections {PHONE_MAX_CONNECTIONS}\n") == 2  # TLS and WebSocket
    with running(prov):
        port = prov.settings.tls_port
        flood = [
            socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) for _ in range(200)
        ]
        try:
            # Not a timed wait for nothing: it ends once the broker has closed the excess.
            # mosquitto 2.0.11 now and then keeps one more than max_connections (seen here and
            # in CI: 33 established, all idle), so the bound is the cap plus that one.
            deadline = time.monotonic() + TIMEOUT_S
            closed: list[socket.socket] = []
            while len(flood) - len(closed) > PHONE_MAX_CONNECTIONS + 1:
                closed += [s for s in flood if s not in closed and _closed_by_broker(s)]
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert len(flood) - len(closed) in (PHONE_MAX_CONNECTIONS, PHONE_MAX_CONNECTIONS + 1)
            # The services' listener is another listener: the link still logs in and publishes.
            link = connect(prov, "link")
            link.subscribe("pendant-bus/#")
            assert link.fence(connect(prov, "ears"), "pendant-bus/intent") == []
        finally:
            for s in flood:
                s.close()


# --- commands: one level deep, read by the link alone, never kept retained -----------------


def test_phones_send_commands_one_level_deep_and_never_read_them(
    tmp_path: Path, connect: Connect
) -> None:
    """Issue 14, item 14: a phone may write `cmd/<name>` only, so it cannot park retained
    blobs deeper down (stored, persisted and replayed), and no phone reads another's commands
    (`say` text, the wearer's sentences); the public topics still reach every phone."""
    prov = _provision_for_test(tmp_path / "p", add_phones=("alice", "bob"))
    base = f"pendant/{DEVICE}"
    blob = b"BLOB-" + uuid.uuid4().hex.encode() + b"x" * LARGEST_EVENT
    with running(prov):
        link = connect(prov, "link")
        link.subscribe(f"{base}/cmd/#")
        alice = connect(prov, "phone-alice", "tls")
        bob = connect(prov, "phone-bob", "ws")
        bob.subscribe(f"{base}/#")

        alice.publish(f"{base}/cmd/x/blob", blob, retain=True)
        alice.publish(f"{base}/cmd/say", b'{"text": "for the link only"}')
        assert link.until(f"{base}/cmd/say", b'{"text": "for the link only"}') == []
        # bob reads what the pendant says, not what alice told it.
        assert bob.fence(link, f"{base}/transcript") == []
        link.publish(f"{base}/intent/HassTurnOn", b"{}")
        link.publish(f"{base}/availability", b"online", retain=True)
        assert bob.until(f"{base}/intent/HassTurnOn", b"{}") == []
        assert bob.until(f"{base}/availability", b"online") == []
        # What the link made of a say, checked, is for every phone to speak (issue 15).
        link.publish(f"{base}/say", b'{"text": "for the phones"}')
        assert bob.until(f"{base}/say", b'{"text": "for the phones"}') == []
    # Stopped: mosquitto wrote what it keeps to its persistence file, and the blob is not there.
    assert blob[:37] not in (prov.layout.state_dir / "mosquitto.db").read_bytes()


async def _next(client: Client, timeout: float = TIMEOUT_S) -> Msg:
    try:
        return await asyncio.to_thread(client.messages.get, timeout=timeout)
    except queue.Empty:
        pytest.fail(f"nothing arrived within {timeout} s")


def test_the_link_deletes_and_reports_retained_commands_but_keeps_the_area(
    tmp_path: Path, connect: Connect
) -> None:
    """Issue 14, item 14, in the shipped topology (the link on the local socket, both as bus
    and as outside broker, with the rendered ACL): a command sent retained, before the link
    connects or while it runs, is not run, is deleted from the broker and is reported on
    `error`; `cmd/area`, a state, is taken retained and stays retained."""
    from pendant.core.config import BusConfig, Config, Home, LinkConfig
    from pendant.link.commands import RETAINED_REASON
    from pendant.link.service import Link

    prov = _provision_for_test(tmp_path / "p", add_phones=("alice", "bob"))
    base = f"pendant/{DEVICE}"
    password_file = str(prov.password_file("link"))
    cfg = Config(
        device_id=DEVICE,
        home=Home(areas=["Kitchen"]),
        bus=BusConfig(socket=str(prov.socket), username="link", password_file=password_file),
        link=LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox.sqlite")),
    )
    with running(prov):
        alice = connect(prov, "phone-alice", "tls")
        bob = connect(prov, "phone-bob", "tls")
        body = connect(prov, "body")
        body.subscribe("pendant-bus/cmd/#")
        bob.subscribe(f"{base}/error")
        # Sent while the link is away: replayed to it when it subscribes.
        alice.publish(f"{base}/cmd/capture", b"{}", retain=True)
        alice.publish(f"{base}/cmd/area", b'{"area": "kitchen"}', retain=True)

        async def scenario() -> list[tuple[str, dict[str, object]]]:
            link = Link(cfg)
            task = asyncio.create_task(link.run())
            try:
                on_bus = []
                topic, payload, _ = await _next(body)
                on_bus.append((topic, json.loads(payload)))
                topic, payload, _ = await _next(bob)
                assert topic == f"{base}/error"
                first = json.loads(payload)
                assert (first["command"], first["reason"]) == ("capture", RETAINED_REASON)
                # Sent retained while the link runs: as good as replayed.
                alice.publish(f"{base}/cmd/identify", b"{}", retain=True)
                topic, payload, _ = await _next(bob)
                second = json.loads(payload)
                assert (second["command"], second["reason"]) == ("identify", RETAINED_REASON)
                alice.publish(f"{base}/cmd/mute", b'{"mic": true}')
                topic, payload, _ = await _next(body)
                on_bus.append((topic, json.loads(payload)))
                assert link.commands == {"retained": 2, "forwarded": 2}
                # Stop only once the link has its PUBACK for the mute: Python 3.11's wait_for
                # (inside aiomqtt's publish) can swallow a cancellation that arrives as the
                # publish completes, and the link would then not stop.
                await within(lambda: link._command_retry is None, TIMEOUT_S)
                return on_bus
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        on_bus = asyncio.run(asyncio.wait_for(scenario(), 6 * TIMEOUT_S))
        assert [(t, c["name"]) for t, c in on_bus] == [
            ("pendant-bus/cmd/area", "area"),
            ("pendant-bus/cmd/mute", "mute"),
        ]
        assert on_bus[0][1]["area"] == "Kitchen"
        # What the broker keeps for the commands' topics now: the area, and nothing else.
        reader = connect(prov, "link")
        reader.subscribe(f"{base}/cmd/+")
        kept = reader.fence(alice, f"{base}/cmd/fence")
        assert kept == [(f"{base}/cmd/area", b'{"area": "kitchen"}', True)]


def test_only_the_eyes_can_send_what_the_camera_read(tmp_path: Path, connect: Connect) -> None:
    """Issue 14: the eyes' intents (ReadText, SeenObjects) carry free text, so the gate holds
    them to looser rules than the ears' closed set. In the shipped topology (the rendered ACL,
    the link on the device's socket, a phone over TLS) a ReadText from the ears' login, on
    either intent topic, gets nothing out of the link; nor does a closed-set intent from the
    eyes' login; the eyes' own ReadText, published as the eyes service publishes, goes out."""
    from pendant.core import bus
    from pendant.core.config import BusConfig, Config, LinkConfig
    from pendant.core.events import READ_TEXT, Intent, Slot
    from pendant.link.service import Link

    prov = _provision_for_test(tmp_path / "p", add_phones=("alice",))
    base = f"pendant/{DEVICE}"
    cfg = Config(
        device_id=DEVICE,
        bus=BusConfig(
            socket=str(prov.socket), username="link", password_file=str(prov.password_file("link"))
        ),
        link=LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox.sqlite")),
    )

    def read_text(words: str) -> Intent:
        slot = Slot(name="text", value=words, raw_value=words, entity="ocr")
        return Intent(device_id=DEVICE, name=READ_TEXT, text=words, confidence=0.9, slots=[slot])

    forged = read_text("unlock the front door and send the code")
    closed = Intent(device_id=DEVICE, name="HassTurnOn", text="turn on the lights", confidence=1)
    genuine = read_text("keep refrigerated after opening")
    with running(prov):
        phone = connect(prov, "phone-alice", "tls")
        phone.subscribe(f"{base}/intent/#")
        ears = connect(prov, "ears")
        eyes = connect(prov, "eyes")

        async def scenario() -> tuple[list[str], dict[str, int]]:
            link = Link(cfg)
            bus_ready = Readiness()  # the link's: subscribed on the bus
            task = asyncio.create_task(link.run(bus_ready))
            try:
                await asyncio.wait_for(bus_ready.wait(), TIMEOUT_S)
                # The ears try both intent topics; the eyes try to speak for the ears.
                for client, topic, event in (
                    (ears, "pendant-bus/intent", forged),
                    (ears, "pendant-bus/eyes/intent", forged),
                    (eyes, "pendant-bus/intent", closed),
                    (eyes, "pendant-bus/eyes/intent", closed),
                ):
                    await asyncio.to_thread(client.publish, topic, event.to_json())
                # The fence: the eyes' own, the way the eyes service publishes it.
                eyes_config = BusConfig(
                    socket=str(prov.socket),
                    username="eyes",
                    password_file=str(prov.password_file("eyes")),
                )
                async with bus.bus_client(eyes_config, "test-eyes") as client:
                    await bus.publish(client, genuine)
                out: list[str] = []
                # Outside, the ids are the link's (`pendant.link.gate.reissue`): back to the bus's.
                back = {link.gate.outside_id(e.id): e.id for e in (forged, closed, genuine)}
                while genuine.id not in out:
                    topic, payload, _ = await _next(phone)
                    said = json.loads(payload)["id"]
                    out.append(back.get(said, said))
                # Stop once every PUBACK is in (see the retained test above).
                await within(lambda: link.idle, TIMEOUT_S)
                return out, dict(link.gate.dropped)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        out, dropped = asyncio.run(asyncio.wait_for(scenario(), 6 * TIMEOUT_S))
    names = {forged.id: "the ears' ReadText", closed.id: "the eyes' HassTurnOn"}
    assert [names.get(i, i) for i in out] == [genuine.id]
    # The ACL stops two of the four before the link; the gate, knowing the topics, the others.
    assert dropped == {"source": 2}


def _written(acl: str) -> dict[str, list[str]]:
    """The rendered ACL's `topic write` / `topic readwrite` lines, by service user."""
    out: dict[str, list[str]] = {}
    user = None
    for line in acl.splitlines():
        words = line.split()
        if words[:1] == ["user"]:
            user = words[1] if words[1] in SERVICE_USERS else None
        elif user and len(words) == 3 and words[0] == "topic" and "write" in words[1]:
            out.setdefault(user, []).append(words[2])
    return out


def test_each_bus_topic_carries_its_own_type_only(tmp_path: Path, connect: Connect) -> None:
    """Security review H1: every public type (and the eyes' intent), published from every
    login on every bus topic that login may write (the rendered ACL) and the link reads: the
    link admits only the type the topic names, so the ACL says who spoke each event: the
    ears cannot put a free-text `scene` on their intent topic, an `error` on their transcript
    topic, nor the eyes a closed-set intent on `scene` or a `status` on `camera`."""
    from pendant.core import bus
    from pendant.core.config import BusConfig, Config, LinkConfig
    from pendant.core.events import (
        READ_TEXT,
        Battery,
        Camera,
        Error,
        Event,
        Intent,
        Mic,
        NotRecognized,
        Scene,
        Sentences,
        Slot,
        Transcript,
        Voices,
    )
    from pendant.link.gate import BUS_NAMES
    from pendant.link.service import Link

    prov = _provision_for_test(tmp_path / "p", add_phones=("alice",))
    cfg = Config(
        device_id=DEVICE,
        bus=BusConfig(
            socket=str(prov.socket), username="link", password_file=str(prov.password_file("link"))
        ),
        link=LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox.sqlite")),
    )
    read = Slot(name="text", value="best before", raw_value="best before", entity="ocr")

    def samples() -> list[Event]:
        d = DEVICE
        return [
            Intent(device_id=d, name="HassTurnOn", text="turn on the lights", confidence=1),
            Intent(device_id=d, name=READ_TEXT, text="best before", confidence=1, slots=[read]),
            NotRecognized(device_id=d),
            Transcript(device_id=d, text="turn on the lights", confidence=1),
            Mic(device_id=d, state="ready"),
            Error(device_id=d, reason="pairing refused"),
            Battery(device_id=d, pct=50),
            Scene(device_id=d, trigger="capture", face_count=1),
            Camera(device_id=d, muted=True),
            Sentences(device_id=d),
            Voices(device_id=d, names=["Sam"], check="conversation", in_force=True),
        ]

    # Every public type the link reads off the bus (not `say`: the link's own, never the bus's).
    assert {e.type for e in samples()} == BUS_NAMES
    read_by_link = {bus.topic(n) for n in BUS_NAMES} | {bus.EYES_INTENT_TOPIC}
    written = _written((prov.layout.conf_dir / "acl").read_text())
    sends = [
        (user, topic, event)
        for user, writes in written.items()
        for topic in writes
        if topic in read_by_link
        for event in samples()
    ]
    # Every topic the link reads has a writer; ears, eyes, body, pairing and link write some.
    assert {t for _, t, _ in sends} == read_by_link
    with running(prov):
        clients = {user: connect(prov, user) for user in written}

        async def scenario() -> tuple[set[str], set[str]]:
            link = Link(cfg)
            seen: set[str] = set()
            passed: set[str] = set()
            admit = link.gate.admit

            def watched(payload: bytes, *args: object, **kw: object) -> Event | None:
                event = admit(payload, *args, **kw)  # type: ignore[arg-type]
                seen.add(json.loads(payload)["id"])
                if event is not None:
                    passed.add(json.loads(payload)["id"])  # the bus's id, not the link's
                return event

            link.gate.admit = watched  # type: ignore[method-assign]
            bus_ready = Readiness()  # the link's: subscribed on the bus
            task = asyncio.create_task(link.run(bus_ready))
            try:
                await asyncio.wait_for(bus_ready.wait(), TIMEOUT_S)
                for user, topic, event in sends:
                    await asyncio.to_thread(clients[user].publish, topic, event.to_json())
                # Every send is on a topic its login may write and the link reads.
                await within(lambda: len(seen) == len(sends), TIMEOUT_S)
                return seen, passed
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        seen, passed = asyncio.run(asyncio.wait_for(scenario(), 6 * TIMEOUT_S))
    assert seen == {e.id for _, _, e in sends}
    got = sorted((u, t, e.type) for u, t, e in sends if e.id in passed)
    want = sorted((u, t, e.type) for u, t, e in sends if t == bus.topic_of(e))
    assert got == want
    # One owner a type: the ears say intents, transcripts, not_recognized, mic and
    # sentences; the eyes scenes, camera and what the camera read; the body the battery; the
    # pairing service errors (the link's own never go on the bus).
    owners = {(t, u) for u, t, _ in want}
    assert {t for t, _ in owners} == read_by_link
    assert {u for t, u in owners if t != bus.topic("error")} == {"ears", "eyes", "body"}
    assert {u for t, u in owners if t == bus.topic("error")} == {"pairing"}


def test_a_poisoned_bus_message_is_dropped_once_not_redelivered(
    tmp_path: Path, connect: Connect
) -> None:
    """Review H2: a battery with `timestamp_ms` 10**30 from the body's login passed the gate
    and raised OverflowError out of the outbox, which stopped the link; unacknowledged, the
    persistent bus session handed it to the restarted link again: a restart loop. Now the
    schema refuses it; and a message whose handling raises anyway (here, a gate made to) is
    dropped, counted and acknowledged: the link goes on, a restarted one never sees it."""
    from pendant.core.config import BusConfig, Config, LinkConfig
    from pendant.core.events import Battery, Event
    from pendant.link.service import Link

    prov = _provision_for_test(tmp_path / "p", add_phones=("alice",))
    cfg = Config(
        device_id=DEVICE,
        bus=BusConfig(
            socket=str(prov.socket), username="link", password_file=str(prov.password_file("link"))
        ),
        link=LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox.sqlite")),
    )
    poison = json.dumps(
        {"type": "battery", "device_id": DEVICE, "pct": 50, "timestamp_ms": 10**30}
    ).encode()
    raising = Battery(device_id=DEVICE, pct=13)
    good = [Battery(device_id=DEVICE, pct=50 + i) for i in range(2)]

    def watch(link: Link) -> tuple[list[str | None], list[str]]:
        """The ids the link's gate is given and passes; it raises on `raising`."""
        admit = link.gate.admit
        seen: list[str | None] = []
        passed: list[str] = []

        def watched(payload: bytes, *args: object, **kw: object) -> Event | None:
            seen.append(json.loads(payload).get("id"))
            if seen[-1] == raising.id:
                raise RuntimeError("a handler that raises")
            event = admit(payload, *args, **kw)  # type: ignore[arg-type]
            passed.extend([json.loads(payload)["id"]] if event is not None else [])  # bus id
            return event

        link.gate.admit = watched  # type: ignore[method-assign]
        return seen, passed

    with running(prov):
        body = connect(prov, "body")

        async def scenario() -> tuple[list[object], list[object]]:
            results = []
            for link, fence in ((Link(cfg), good[0]), (Link(cfg), good[1])):
                seen, passed = watch(link)
                bus_ready = Readiness()  # the link's: subscribed on the bus
                task = asyncio.create_task(link.run(bus_ready))
                try:
                    await asyncio.wait_for(bus_ready.wait(), TIMEOUT_S)
                    # The first link gets the poison; the restarted one only the fence, unless
                    # the session hands it the poison again (before the fence: in order).
                    sends = (poison, raising.to_json()) if fence is good[0] else ()
                    for payload in (*sends, fence.to_json()):
                        await asyncio.to_thread(body.publish, "pendant-bus/battery", payload)
                    # A link that died meanwhile ends the wait too (its task says why).
                    await within(lambda: fence.id in passed or task.done(), TIMEOUT_S)  # noqa: B023
                    crashed = task.exception() if task.done() else None
                    poisoned = getattr(link, "poisoned", None)
                    results.append([crashed, len(seen), dict(link.gate.dropped), poisoned])
                finally:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            return results[0], results[1]

        one, two = asyncio.run(asyncio.wait_for(scenario(), 6 * TIMEOUT_S))
    assert one == [None, 3, {"schema": 1}, 1]
    assert two == [None, 1, {}, 0]


# --- persistence and the bridge ------------------------------------------------------------


def test_retained_status_survives_a_restart(tmp_path: Path, connect: Connect) -> None:
    """Proves persistence true with a writable persistence_location: the retained status is
    on disk after a stop and served to a phone by the restarted broker."""
    prov = _provision_for_test(tmp_path / "r", add_phones=("alice",))
    with running(prov):
        link = connect(prov, "link")
        link.publish(f"pendant/{DEVICE}/status", b'{"state": "idle"}', retain=True)
        link.close()
    assert (prov.layout.state_dir / "mosquitto.db").is_file()
    with running(prov):
        phone = connect(prov, "phone-alice", "tls")
        phone.subscribe(f"pendant/{DEVICE}/status")
        assert phone.until(f"pendant/{DEVICE}/status", b'{"state": "idle"}') == []


def test_mosquittos_saves_are_renamed_durably(tmp_path: Path) -> None:
    """mosquitto fsyncs `mosquitto.db.new` and renames it over `mosquitto.db` without an
    fsync of the directory, so on ext4 the rename waited for the next journal commit (30 s on
    the image) and a power cut meanwhile brought the last save back. Provisioning marks the
    state directory `chattr +D`: its renames are written through (tests/system/test_home_queue.py's
    power-cut test shows what that keeps)."""
    probe = tmp_path / "probe"
    probe.mkdir()
    if not durable.write_names_through(probe):
        pytest.skip(f"{tmp_path}'s filesystem has no dirsync flag (chattr +D): ext4 has")
    prov = _provision_for_test(tmp_path / "r")
    assert durable.writes_names_through(prov.layout.state_dir)
    with running(prov):
        pass  # mosquitto saves on the way out, into the flagged directory
    assert (prov.layout.state_dir / "mosquitto.db").is_file()


def _home_broker(prov_or_root: Provisioned | Path) -> dict[str, object] | None:
    """The link settings provisioning wrote for the home broker, or None."""
    layout = prov_or_root.layout if isinstance(prov_or_root, Provisioned) else Layout(prov_or_root)
    path = layout.home_broker_config
    return tomllib.loads(path.read_text())["link"] if path.exists() else None


def test_the_home_broker_is_the_links_not_a_bridge(tmp_path: Path) -> None:
    """Issue 14 item 4: the home broker options no longer render a mosquitto bridge (which
    acknowledged at once, queued with no expiry and lost its queue to a power cut) but the
    link's settings, in the device config's drop-in folder; a bridge an older version rendered
    is removed, and `--no-bridge` forgets the home broker. The password stays in the secrets
    (0600), never in the drop-in (0644)."""
    password = tmp_path / "home.password"
    password.write_text("secret\n")
    ca = tmp_path / "home-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    root = tmp_path / "root"
    old = Layout(root).old_bridge_conf
    old.parent.mkdir(parents=True)
    old.write_text("connection old\n")
    prov = _provision_for_test(
        root, bridge_host="ha.lan", bridge_user="pendant", bridge_password_file=password,
        bridge_cafile=str(ca),
    )  # fmt: skip
    assert _home_broker(prov) == {
        "host": "ha.lan", "port": 8883, "username": "pendant", "tls": True, "cafile": str(ca),
    }  # fmt: skip
    assert stat.S_IMODE(prov.layout.home_broker_config.stat().st_mode) == 0o644
    assert "secret" not in prov.layout.home_broker_config.read_text()
    assert prov.layout.bridge_password_file.read_text() == "secret\n"
    assert stat.S_IMODE(prov.layout.bridge_password_file.stat().st_mode) == 0o600
    assert not old.exists()
    assert "include_dir" not in prov.conf.read_text()
    assert "home/cmd" not in (prov.layout.conf_dir / "acl").read_text()
    # The device config sees it (pendant.core.config reads the drop-in folder).
    from pendant.core.config import drop_in_dir, load_config

    config = prov.layout.etc / "pendant.toml"
    config.write_text('[link]\nsocket = "/run/mosquitto/pendant.sock"\n')
    assert drop_in_dir(config) == prov.layout.home_broker_config.parent
    link = load_config(config).link
    assert (link.host, link.socket, link.cafile) == ("ha.lan", "/run/mosquitto/pendant.sock",
                                                     str(ca))  # fmt: skip
    assert link.phones_apart and link.uses_tls
    _provision_for_test(root, bridge_host="")  # --no-bridge
    assert _home_broker(root) is None


def test_a_bridge_without_a_ca_is_refused_unless_plaintext_is_asked_for(tmp_path: Path) -> None:
    """Issue 14 item 15: no CA and no --bridge-insecure is one line naming the flag, nothing
    written; with the flag the bridge is plaintext (port 1883), and every run says so."""
    password = tmp_path / "home.password"
    password.write_text("secret\n")
    root = tmp_path / "root"
    bridge = ["--bridge-host", "10.0.0.2", "--bridge-user", "bridge",
              "--bridge-password-file", str(password)]  # fmt: skip
    base = ["--root", str(root), "--run-as", ME, "--device-id", DEVICE,
            "--tls-port", str(free_port()), "--ws-port", str(free_port())]  # fmt: skip
    refused = _cli(*base, *bridge)
    assert refused.returncode == 2
    assert refused.stderr.startswith("provision: error: ") and refused.stderr.count("\n") == 1
    assert "--bridge-insecure" in refused.stderr and "--bridge-cafile" in refused.stderr
    assert not (root / "etc").exists()

    plain = _cli(*base, *bridge, "--bridge-insecure")
    assert plain.returncode == 0, plain.stderr
    warning = [ln for ln in plain.stderr.splitlines() if "plaintext" in ln]
    assert warning == [
        "provision: warning: the link to 10.0.0.2:1883 is plaintext (--bridge-insecure): "
        "its password and every event cross the network readable"
    ]
    home = _home_broker(root)
    assert home is not None and (home["port"], home["tls"]) == (1883, False)
    assert "cafile" not in home
    # Remembered, and warned about again on the next run.
    again = _cli(*base)
    assert again.returncode == 0 and "plaintext" in again.stderr

    # A CA given later makes it TLS, and the flag is forgotten.
    ca = tmp_path / "home-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    tls = _cli(*base, "--bridge-cafile", str(ca))
    assert tls.returncode == 0 and "plaintext" not in tls.stderr
    home = _home_broker(root)
    assert home is not None and (home["cafile"], home["tls"]) == (str(ca), True)
    assert home["port"] == 8883  # no port was given: the TLS one
    both = _cli(*base, "--bridge-cafile", str(ca), "--bridge-insecure")
    assert both.returncode == 2 and both.stderr.count("\n") == 1

    # Removing the bridge forgets a plaintext choice: a new bridge must make it again.
    assert _cli(*base, "--bridge-insecure").returncode == 0
    assert _cli(*base, "--no-bridge").returncode == 0
    assert _cli(*base, *bridge).returncode == 2


def test_a_tls_bridge_defaults_to_port_8883_and_takes_the_system_store(tmp_path: Path) -> None:
    password = tmp_path / "home.password"
    password.write_text("secret\n")
    prov = _provision_for_test(
        tmp_path / "root",
        bridge_host="broker.example.org",
        bridge_user="bridge",
        bridge_password_file=password,
        bridge_capath="/etc/ssl/certs",
    )
    home = _home_broker(prov)
    assert home is not None and (home["host"], home["port"]) == ("broker.example.org", 8883)
    assert home["tls"] is True and "cafile" not in home  # the system store: the link's default
    with pytest.raises(ProvisionError, match=r"--bridge-cafile /nowhere/ca\.crt: no such file"):
        _provision_for_test(
            tmp_path / "other",
            bridge_host="h",
            bridge_user="bridge",
            bridge_password_file=password,
            bridge_cafile="/nowhere/ca.crt",
        )
    # A folder other than the system store: the link (Python's ssl) takes a file or the store.
    with pytest.raises(ProvisionError, match=r"--bridge-capath .*: only the system store"):
        _provision_for_test(
            tmp_path / "third",
            bridge_host="h",
            bridge_user="bridge",
            bridge_password_file=password,
            bridge_capath=str(tmp_path),
        )


def test_a_plaintext_bridge_from_before_tls_was_the_default_keeps_working(tmp_path: Path) -> None:
    """A device provisioned by an older version (no CA, no flag): its boot unit still works."""
    password = tmp_path / "home.password"
    password.write_text("secret\n")
    prov = _provision_for_test(
        tmp_path / "root", bridge_host="10.0.0.2", bridge_user="bridge",
        bridge_password_file=password, bridge_insecure=True,
    )  # fmt: skip
    saved = json.loads(prov.layout.settings_file.read_text())
    del saved["bridge_insecure"], saved["bridge_capath"]
    saved["bridge_port"] = 1883
    prov.layout.settings_file.write_text(json.dumps(saved))
    again = _provision_for_test(tmp_path / "root")
    assert again.settings.bridge_insecure
    home = _home_broker(again)
    assert home is not None and (home["port"], home["tls"]) == (1883, False)


def test_the_home_broker_cannot_unmute_or_capture_but_a_phone_can(
    tmp_path: Path, connect: Connect
) -> None:
    """Issue 14, item 2, in the shipped topology (issue 14 item 4: the link on the device's
    socket for phones and on the home broker itself, the rendered ACL): a client of the home
    broker may mute but not unmute, and cannot capture; each refusal comes back to the home
    broker as an `error`. A paired phone keeps every right."""
    from pendant.core.config import BusConfig, Config, LinkConfig
    from pendant.link.service import Link

    base = f"pendant/{DEVICE}"
    with LocalBroker(users=("pendant", "ha"), tcp=True) as home:
        assert home.port is not None
        ha = Client(Endpoint("tcp", "127.0.0.1", home.port), "ha", home.password("ha"))
        assert not ha.open().is_failure
        try:
            ha.subscribe(f"{base}/availability", f"{base}/error")
            prov = _provision_for_test(tmp_path / "h", add_phones=("alice",))
            cfg = Config(
                device_id=DEVICE,
                bus=BusConfig(
                    socket=str(prov.socket),
                    username="link",
                    password_file=str(prov.password_file("link")),
                ),
                link=LinkConfig(
                    socket=str(prov.socket),
                    # The test's home broker: plain TCP on 127.0.0.1.
                    host="127.0.0.1",
                    port=home.port,
                    username="pendant",
                    password_file=str(home.password_file("pendant")),
                    outbox_path=str(tmp_path / "o.sqlite"),
                ),
            )
            with running(prov):
                alice = connect(prov, "phone-alice", "tls")
                body = connect(prov, "body")
                body.subscribe("pendant-bus/cmd/#")

                async def scenario() -> tuple[list[dict[str, object]], list[str]]:
                    link = Link(cfg)
                    task = asyncio.create_task(link.run())
                    try:
                        for side in link.sides:
                            await asyncio.wait_for(side.connected.wait(), TIMEOUT_S)
                        assert (await _next(ha))[1] == b"online"  # its last will is here too
                        on_bus = []
                        # From the home broker: two unmutes and a capture, then a mute; and
                        # an unmute straight onto the internal bus.
                        ha.publish("pendant-bus/cmd/mute", b'{"mic": false}')
                        ha.publish(f"{base}/cmd/mute", b'{"mic": false}')
                        ha.publish(f"{base}/cmd/capture", b"{}")
                        ha.publish(f"{base}/cmd/mute", b'{"mic": true, "camera": false}')
                        ha.publish(f"{base}/cmd/mute", b'{"mic": true}')
                        on_bus.append(json.loads((await _next(body))[1]))
                        assert on_bus[0].get("mic") is True, f"reached the bus: {on_bus[0]}"
                        errors = []
                        for _ in range(3):
                            topic, payload, _ = await _next(ha)
                            assert topic == f"{base}/error"
                            errors.append(json.loads(payload)["reason"])
                        # A phone, on the device's own broker, may unmute and capture.
                        alice.publish(f"{base}/cmd/mute", b'{"mic": false}')
                        alice.publish(f"{base}/cmd/capture", b"{}")
                        on_bus.append(json.loads((await _next(body))[1]))
                        on_bus.append(json.loads((await _next(body))[1]))
                        assert link.commands == {"refused": 3, "forwarded": 3}
                        # See the retained test above.
                        await within(lambda: link._command_retry is None, TIMEOUT_S)
                        return on_bus, errors
                    finally:
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)

                on_bus, errors = asyncio.run(asyncio.wait_for(scenario(), 6 * TIMEOUT_S))
        finally:
            ha.close()
    commands = [{k: c.get(k) for k in ("name", "mic", "camera")} for c in on_bus]
    assert commands == [
        {"name": "mute", "mic": True, "camera": None},
        {"name": "mute", "mic": False, "camera": None},
        {"name": "capture", "mic": None, "camera": None},
    ]
    unmute = "unmuting is for a paired phone or the button, not the home broker"
    capture = "capture is for a paired phone or the button, not the home broker"
    assert errors == [unmute, capture, unmute]


# --- provisioning --------------------------------------------------------------------------


def _secret_values(prov: Provisioned) -> dict[str, str]:
    return {u: prov.password(u) for u in prov.users}


def test_secrets_are_private_files(tmp_path: Path) -> None:
    """Proves invariant 4's file half: every secret is 0600 in a 0700 folder, the broker's
    hashed passwords and key are 0600, and no password is in a readable file (the home
    broker's settings, 0644, hold none)."""
    given = tmp_path / "home.password"
    given.write_text("home-broker-secret\n")
    given.chmod(0o600)
    prov = _provision_for_test(
        tmp_path / "root",
        add_phones=("alice",),
        bridge_host="127.0.0.1",
        bridge_user="bridge",
        bridge_insecure=True,
        bridge_password_file=given,
    )
    lay = prov.layout
    assert stat.S_IMODE(lay.secrets.stat().st_mode) == 0o700
    private = [*lay.secrets.iterdir(), lay.conf_dir / "passwd", lay.conf_dir / "server.key"]
    assert len(private) >= 9 and lay.home_broker_config.exists()
    for p in private:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    readable = [p for p in lay.root.rglob("*") if p.is_file() and p.stat().st_mode & 0o044]
    for p in readable:
        text = p.read_text(errors="replace")
        for user, password in {**_secret_values(prov), "home": "home-broker-secret"}.items():
            assert password not in text, f"{user}'s password in {p}"


def test_no_default_passwords(tmp_path: Path) -> None:
    """Proves no default secrets: two provisions share no password, id or key, and each
    user of one has its own password."""
    a = _provision_for_test(tmp_path / "a", device_id=None, add_phones=("alice",))
    b = _provision_for_test(tmp_path / "b", device_id=None, add_phones=("alice",))
    pa, pb = _secret_values(a), _secret_values(b)
    assert set(pa) == set(pb) == {*SERVICE_USERS, "phone-alice"}
    values = [*pa.values(), *pb.values()]
    assert len(set(values)) == len(values)
    assert all(len(v) >= 32 for v in values)
    assert a.device_id != b.device_id
    assert a.ca_cert.read_bytes() != b.ca_cert.read_bytes()


def test_second_run_keeps_every_secret(tmp_path: Path, connect: Connect) -> None:
    """Proves idempotence: a second run changes no secret, id, key or certificate, and the
    rebuilt password file still accepts the kept passwords."""
    first = _provision_for_test(tmp_path, add_phones=("alice",))
    keep = [*first.layout.secrets.iterdir(), first.layout.device_id_file, first.ca_cert,
            first.layout.conf_dir / "server.crt", first.layout.conf_dir / "server.key"]  # fmt: skip
    before = {p: p.read_bytes() for p in keep}
    # No settings this time: the remembered ports and user are used.
    second = provision(tmp_path)
    assert {p: p.read_bytes() for p in keep} == before
    assert second.settings == first.settings
    assert second.users == first.users
    with running(second):
        connect(second, "link")
        connect(second, "phone-alice", "tls")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant.setup.provision", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_add_and_remove_a_phone(tmp_path: Path) -> None:
    """Proves `--add-phone` on a provisioned device: a new user with its own 0600 password and
    ACL block, existing secrets untouched, accepted by the running broker after a reload;
    `--remove-phone` takes it away again."""
    prov = _provision_for_test(tmp_path)
    before = _secret_values(prov)
    with running(prov) as proc:
        where = endpoint(prov, "tls")
        done = _cli("--root", str(tmp_path), "--add-phone", "carol")
        assert done.returncode == 0, done.stderr
        pw = prov.password_file("phone-carol")
        assert stat.S_IMODE(pw.stat().st_mode) == 0o600
        assert "user phone-carol" in (prov.layout.conf_dir / "acl").read_text()
        assert (prov.layout.conf_dir / "passwd").read_text().count("phone-carol:") == 1
        assert {u: prov.password(u) for u in before} == before
        proc.send_signal(signal.SIGHUP)
        assert _accepted_eventually(where, "phone-carol", pw.read_text().strip(), True)

        password = pw.read_text().strip()
        done = _cli("--root", str(tmp_path), "--remove-phone", "carol")
        assert done.returncode == 0, done.stderr
        assert not pw.exists()
        proc.send_signal(signal.SIGHUP)
        assert _accepted_eventually(where, "phone-carol", password, False)


@pytest.mark.parametrize("via", ["tls", "ws"])
def test_revoking_a_phone_cuts_its_live_connection(
    tmp_path: Path, connect: Connect, via: str
) -> None:
    """Proves what the README promises of `revoke`: the reload it does (SIGHUP to the pid it
    is given, as the pairing window does) cuts the revoked phone's open connection at once and
    refuses its password from then on, while another paired phone stays connected."""
    prov = _provision_for_test(tmp_path, add_phones=("alice", "bob"))
    with running(prov) as proc:
        alice, bob = connect(prov, "phone-alice", via), connect(prov, "phone-bob", via)
        link = connect(prov, "link")
        bob.subscribe(f"pendant/{DEVICE}/intent/#")
        password = prov.password("phone-alice")
        assert pairing.revoke(tmp_path, "alice", broker_pid=proc.pid)
        assert alice.disconnected.wait(TIMEOUT_S), "the revoked phone is still connected"
        assert _accepted_eventually(endpoint(prov, via), "phone-alice", password, False)
        assert bob.fence(link, f"pendant/{DEVICE}/intent/Fence") == []
        assert not bob.disconnected.is_set()


def test_pairing_a_name_again_rotates_its_password(tmp_path: Path, connect: Connect) -> None:
    """Proves re-pairing under a name already paired replaces that phone: the new link has a
    new password, and after the reload `pair` does, the old password is refused and the
    replaced phone's open connection is cut."""
    prov = _provision_for_test(tmp_path, add_phones=("alice",))
    old = prov.password("phone-alice")
    with running(prov) as proc:
        replaced = connect(prov, "phone-alice", "tls")
        again = pairing.pair(tmp_path, "alice", host="127.0.0.1", broker_pid=proc.pid)
        assert again.user == "phone-alice"
        assert again.password != old
        assert prov.password("phone-alice") == again.password
        assert stat.S_IMODE(prov.password_file("phone-alice").stat().st_mode) == 0o600
        assert replaced.disconnected.wait(TIMEOUT_S), "the replaced phone is still connected"
        where = endpoint(prov, "tls")
        assert _accepted_eventually(where, "phone-alice", again.password, True)
        assert attempt(where, "phone-alice", old).is_failure


@pytest.mark.parametrize("args", [
    ["--device-id", "Not_Valid"],
    ["--add-phone=-bad"],
    ["--bridge-host", "127.0.0.1"],
])  # fmt: skip
def test_errors_are_one_line(tmp_path: Path, args: list[str]) -> None:
    """Proves the CLI's failures are one line naming the problem, exit code 2."""
    done = _cli("--root", str(tmp_path), "--run-as", ME, *args)
    assert done.returncode == 2
    assert done.stderr.startswith("provision: error: ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(("flag", "value"), [
    ("--bridge-host", "127.0.0.1\ntopic # both 0"),
    ("--bridge-user", "bridge\ntopic # both 0"),
    ("--bridge-password-file", "secret\ntopic # both 0"),
    ("--bridge-cafile", "/etc/ssl/home.crt\rtopic # both 0"),
    ("--bind-address", "127.0.0.1\nallow_anonymous true"),
    ("--san", "pendant.lan\x7f"),
])  # fmt: skip
def test_control_characters_cannot_reach_a_config(tmp_path: Path, flag: str, value: str) -> None:
    """Proves a value rendered into mosquitto's config cannot add settings of its own (the
    review's `topic # both 0` would bridge the whole bus both ways): a line break or other
    control character is refused in one line naming the option, exit code 2, the value (a
    password, maybe) not echoed, and nothing written."""
    password = tmp_path / "home.password"
    password.write_text("secret\n")
    given = {"--bridge-host": "127.0.0.1", "--bridge-user": "bridge",
             "--bridge-password-file": str(password), flag: value}  # fmt: skip
    if flag == "--bridge-password-file":
        password.write_text(value + "\n")
        given[flag] = str(password)
    root = tmp_path / "root"
    args = [a for pair in given.items() for a in pair]
    done = _cli("--root", str(root), "--run-as", ME, "--device-id", DEVICE, *args)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("provision: error: ")
    assert done.stderr.count("\n") == 1
    assert flag in done.stderr
    assert "topic # both 0" not in done.stderr and "secret" not in done.stderr
    assert not (root / "etc").exists()


def test_device_id_cannot_change_silently(tmp_path: Path) -> None:
    """Proves the id is kept: a second run naming another id fails instead of leaving the
    certificate and ACL for the old one."""
    _provision_for_test(tmp_path)
    with pytest.raises(ProvisionError, match="already provisioned"):
        provision(tmp_path, device_id="other-dev")


def test_unknown_placeholder_stops_rendering() -> None:
    """Proves a template typo cannot reach mosquitto as a literal path."""
    with pytest.raises(ProvisionError, match="@SOKCET@"):
        render("listener 0 @SOKCET@\n", {"SOCKET": "/run/x.sock"})


def _can_bind_mount() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-m", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.skipif(not _can_bind_mount(), reason="needs root and unshare for private mounts")
def test_provisioning_and_pairing_across_separate_mounts(tmp_path: Path) -> None:
    """pendant-pairing's ReadWritePaths=/etc/pendant /etc/mosquitto/pendant makes the two
    folders separate mounts, where a rename from one to the other fails (EXDEV): first boot
    and a paired phone must work there too, and leave no half-made account."""
    root = tmp_path / "root"
    secrets_dir, conf_dir = root / "etc/pendant", root / "etc/mosquitto/pendant"
    secrets_dir.mkdir(parents=True)
    conf_dir.mkdir(parents=True)
    provision_cmd = (f"{sys.executable} -m pendant.setup.provision --root {root} --run-as {ME} "
                     f"--device-id {DEVICE} --bind-address 127.0.0.1")  # fmt: skip
    script = (f"mount --bind {secrets_dir} {secrets_dir} && mount --bind {conf_dir} {conf_dir} "
              f"&& {provision_cmd} && {provision_cmd} --add-phone alice")  # fmt: skip
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "phone-alice:" in (conf_dir / "passwd").read_text()
    assert (secrets_dir / "secrets" / "phone-alice.password").is_file()
    assert stat.S_IMODE((conf_dir / "server.key").stat().st_mode) == 0o600
    assert not list(secrets_dir.glob("secrets/.provision-*")), "a scratch folder was left"


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def test_the_ca_key_is_not_kept_and_the_ca_vouches_for_this_device_only(tmp_path: Path) -> None:
    """A lost SD card must not hand out a CA that phones trust for every site: the key signs
    the server certificate and is gone, and the CA is name-constrained to the device's own
    names, so even a CA made the same way signs nothing else that verifies."""
    prov = _provision_for_test(tmp_path / "r", add_phones=("alice",))
    assert not [p for p in prov.layout.root.rglob("*") if p.name == "ca.key"]
    text = _openssl("x509", "-in", str(prov.ca_cert), "-noout", "-text").stdout
    assert "X509v3 Name Constraints: critical" in text
    assert f"DNS:{DEVICE}.local" in text and "google" not in text
    server = prov.layout.conf_dir / "server.crt"
    assert _openssl("verify", "-CAfile", str(prov.ca_cert), str(server)).returncode == 0

    # What the review did with a card's key, with a CA minted by the same config.
    work = tmp_path / "attack"
    work.mkdir()
    cnf = work / "openssl.cnf"
    cnf.write_text(openssl_config(DEVICE, []))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["req", "-x509", "-new", "-config", str(cnf), "-extensions", "ca_ext", *ec, "-subj",
         "/CN=ca", "-keyout", str(work / "ca.key"), "-out", str(work / "ca.crt")],
        ["req", "-new", *ec, "-subj", "/CN=accounts.google.com", "-addext",
         "subjectAltName=DNS:accounts.google.com", "-keyout", str(work / "evil.key"), "-out",
         str(work / "evil.csr")],
        ["x509", "-req", "-in", str(work / "evil.csr"), "-CA", str(work / "ca.crt"), "-CAkey",
         str(work / "ca.key"), "-copy_extensions", "copy", "-out", str(work / "evil.crt")],
    ]  # fmt: skip
    for step in steps:
        made = _openssl(*step)
        assert made.returncode == 0, made.stderr
    forged = _openssl("verify", "-CAfile", str(work / "ca.crt"), str(work / "evil.crt"))
    assert forged.returncode != 0
    assert "subtree violation" in forged.stdout + forged.stderr


def test_a_key_left_by_an_older_version_is_removed_and_the_ca_reminted(tmp_path: Path) -> None:
    first = _provision_for_test(tmp_path / "r")
    first.layout.ca_key.write_text("an unconstrained CA's key from before")
    old_ca = first.ca_cert.read_bytes()
    again = _provision_for_test(tmp_path / "r")
    assert not again.layout.ca_key.exists()
    assert again.ca_cert.read_bytes() != old_ca
    server = again.layout.conf_dir / "server.crt"
    assert _openssl("verify", "-CAfile", str(again.ca_cert), str(server)).returncode == 0
