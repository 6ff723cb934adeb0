"""Where the link stands with the home broker, as it tells the bus (`link_state`, for the LED).

The classification against real exception objects (and real failed connections), then the
link on real mosquitto: a bus on a unix socket and a TCP home broker that goes away.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import ssl
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt.exceptions import MqttConnectError

from pendant.app.local_broker import LocalBroker, free_port
from pendant.core import bus
from pendant.core.config import Config
from pendant.core.events import LinkState, parse_event
from pendant.link.outside import outside_state_of
from pendant.link.service import Link
from tests.support.link_support import link_config
from tests.support.tasks import running, until
from tests.system.test_link_outage import TEST_S, start_link, write_config


def wrapped(cause: BaseException) -> aiomqtt.MqttError:
    """`cause` as aiomqtt raises it from a failed connect: an MqttError `from None`."""
    try:
        try:
            raise cause
        except OSError as exc:
            raise aiomqtt.MqttError(str(exc)) from None
    except aiomqtt.MqttError as exc:
        return exc


@pytest.mark.parametrize(
    ("cause", "state"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "no_network"),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "no_network"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "no_network"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "no_network"),
        (OSError(errno.ENETDOWN, "Network is down"), "no_network"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "no_broker"),
        (TimeoutError(errno.ETIMEDOUT, "timed out"), "no_broker"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "no_broker"),
        (ssl.SSLError(1, "wrong version number"), "no_broker"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), "no_broker"),
    ],
)
def test_a_connect_error_says_whether_the_network_or_the_broker_is_at_fault(
    cause: OSError, state: str
) -> None:
    assert outside_state_of(cause) == state
    assert outside_state_of(wrapped(cause)) == state  # under aiomqtt's MqttError


def test_a_broker_that_answers_no_is_the_brokers_fault() -> None:
    assert outside_state_of(MqttConnectError(5)) == "no_broker"  # not authorised
    assert outside_state_of(MqttConnectError(4)) == "no_broker"  # bad password
    assert outside_state_of(aiomqtt.MqttError("Operation timed out")) == "no_broker"


async def connect_error(hostname: str, port: int, **login: str) -> aiomqtt.MqttError:
    try:
        async with aiomqtt.Client(hostname, port, timeout=5, **login):  # type: ignore[arg-type]
            pass
    except aiomqtt.MqttError as exc:
        return exc
    raise AssertionError(f"connected to {hostname}:{port}")


def test_real_failed_connections_are_told_apart() -> None:
    closed_port = free_port()
    # Nothing listens there: refused, with the network up.
    refused = asyncio.run(asyncio.wait_for(connect_error("127.0.0.1", closed_port), TEST_S))
    assert outside_state_of(refused) == "no_broker"
    # `.invalid` never resolves (RFC 6761), with or without a network.
    unnamed = asyncio.run(asyncio.wait_for(connect_error("broker.invalid", 1883), TEST_S))
    assert outside_state_of(unnamed) == "no_network"
    # A broker that answers, and refuses the login.
    with LocalBroker(users=("link",), tcp=True) as home:
        assert home.port is not None
        login = {"username": "link", "password": "not-the-password"}
        refused_login = asyncio.run(
            asyncio.wait_for(connect_error("127.0.0.1", home.port, **login), TEST_S)
        )
    assert isinstance(refused_login, MqttConnectError)
    assert outside_state_of(refused_login) == "no_broker"


@pytest.fixture
def bus_broker() -> LocalBroker:
    with LocalBroker(users=("pendant",)) as b:
        yield b  # type: ignore[misc]


def test_the_link_tells_the_bus_it_connected_and_that_the_broker_went_away(
    bus_broker: LocalBroker, tmp_path: Path
) -> None:
    home = LocalBroker(users=("link", "viewer"), tcp=True)
    home.start()
    try:
        asyncio.run(asyncio.wait_for(_states(bus_broker, home, tmp_path), TEST_S))
    finally:
        home.stop()


async def _states(bus_broker: LocalBroker, home: LocalBroker, tmp: Path) -> None:
    cfg = link_config(bus_broker, home, tmp)
    # A stale state from the last boot, retained: the link must replace it at once.
    stale = LinkState(device_id=cfg.device_id, state="connected")
    async with bus.bus_client(cfg.bus, "test-last-boot") as last_boot:
        await bus.publish(last_boot, stale)
    seen: list[LinkState] = []

    def states() -> list[str]:
        return [e.state for e in seen if e.id != stale.id]

    async def watch() -> None:
        async with bus.bus_client(cfg.bus, "test-body") as body:
            await body.subscribe(bus.topic("link_state"), qos=1)
            async for event in bus.events(body):
                assert isinstance(event, LinkState)
                seen.append(event)

    link = Link(cfg)
    async with running(watch()):
        await until(lambda: [e.id for e in seen] == [stale.id], "the last boot's state")
        async with running(link.run()):
            await until(lambda: states()[-1:] == ["connected"], "the link saying it connected")
            # Its first word is "connecting", unless it had connected before the bus was up.
            assert states()[0] in ("connecting", "connected")
            home.stop()
            # The network (loopback) is up: mosquitto is gone, the port refuses.
            await until(lambda: states()[-1] == "no_broker", "the link saying the broker left")
    # Retained: what a body starting now would learn first.
    async with bus.bus_client(cfg.bus, "test-late-body") as late:
        await late.subscribe(bus.topic("link_state"), qos=1)
        async with asyncio.timeout(TEST_S / 4):
            message = await anext(aiter(late.messages))
    assert message.retain
    event = parse_event(bytes(message.payload))  # type: ignore[arg-type]
    assert isinstance(event, LinkState) and event.state == "no_broker"


def test_a_link_that_dies_leaves_connecting_not_connected(
    bus_broker: LocalBroker, tmp_path: Path
) -> None:
    """SIGKILL: no goodbye, so the bus broker publishes the link's will, and the body's LED
    stops saying the pendant is ready."""
    with LocalBroker(users=("link", "viewer"), tcp=True) as home:
        cfg = link_config(bus_broker, home, tmp_path)
        proc = start_link(write_config(cfg, tmp_path / "pendant.toml"), tmp_path / "link.log")
        try:
            asyncio.run(asyncio.wait_for(_killed(cfg, proc), TEST_S))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


async def _killed(cfg: Config, proc: subprocess.Popen[bytes]) -> None:
    async def retained_state() -> str:
        async with bus.bus_client(cfg.bus, "test-body") as body:
            await body.subscribe(bus.topic("link_state"), qos=1)
            async with asyncio.timeout(TEST_S / 4):
                message = await anext(aiter(body.messages))
        event = parse_event(bytes(message.payload))  # type: ignore[arg-type]
        assert isinstance(event, LinkState)
        return event.state

    for _ in range(int(TEST_S / 0.5)):
        if await retained_state() == "connected":
            break
        await asyncio.sleep(0.5)
    assert await retained_state() == "connected"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(int(TEST_S / 0.5)):
        if await retained_state() == "connecting":
            break
        await asyncio.sleep(0.5)
    assert await retained_state() == "connecting"
