"""`pendant doctor`'s brokers: log in where the pendant logs in, and ask the home broker whether
the link is connected there.

Each login is built by the code the pendant itself connects with (`pendant.core.bus.bus_client`,
`pendant.link.outside.client`), with the credentials the config names or, on a provisioned
pendant whose config names none, those the link's unit hands it (`/etc/pendant/secrets`, root's:
run the doctor with sudo there). A wrong password is then one line here, not a reconnect loop in
the link's journal. The doctor logs in under a client id of its own, with a session that ends
when it leaves and no last will, so the link's session and its availability stay untouched.

There is no mosquitto bridge any more: the link connects to the home broker itself. Whether it
is connected is what it says there, its retained `availability` (`online` on connect, `offline`
when it stops or, as its last will, when it drops off).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from pendant.app.doctor.finding import Finding
from pendant.app.services import with_credentials
from pendant.core import bus
from pendant.core.config import Config
from pendant.core.errors import PendantError
from pendant.link import outside as link_outside
from pendant.setup.provision import Layout

ROOT = Path("/")
# paho gives up a TCP connect (and a TLS handshake) after 5 s; the CONNACK gets the rest.
LOGIN_TIMEOUT_S = 7.0
# A retained message comes right behind the SUBACK; this is only a margin.
RETAINED_WAIT_S = 1.0
CLIENT_ID = "pendant-doctor"
# CONNACK codes that mean "not with these credentials": MQTT 3.1.1's 4 and 5, MQTT 5's 134
# (bad user name or password) and 135 (not authorised).
NOT_AUTHORISED = frozenset({4, 5, 134, 135})


@dataclass(frozen=True)
class Login:
    """One broker the pendant logs in to, as the config says it does."""

    name: str
    where: str
    where_keys: str
    """The config keys that say where it is."""
    username: str | None
    user_key: str
    password_key: str
    password_file: str | None
    connect: Callable[[], aiomqtt.Client]
    """The client, unconnected; raises PendantError for an unreadable password or CA file."""
    home: bool = False
    """The link's home broker, where its availability is."""

    @property
    def socket(self) -> bool:
        """Reached over a Unix socket (bus.socket, link.socket), not TCP: a failure to connect
        then points at mosquitto."""
        return self.where_keys.endswith(".socket")


def as_the_link(config: Config, root: Path = ROOT) -> Config | None:
    """The config with the credentials the link logs in with: the config's own, or on a
    provisioned pendant whose config names no bus password, the files the link's unit loads
    (MQTT user `link`). None when those files are there but this user cannot read them."""
    layout = Layout(root)
    # os.path: False, not an error, where /etc/pendant itself is closed to this user.
    if config.bus.password_file or not os.path.isdir(layout.secrets):
        return config
    if not os.access(layout.secrets, os.R_OK | os.X_OK):
        return None
    return with_credentials(
        config, "link", layout.password_file("link"), layout.bridge_password_file
    )


def logins(config: Config) -> list[Login]:
    """Where the pendant logs in: the bus, the phones' broker if it is another login, the home
    broker."""
    doctor_id = f"{CLIENT_ID}-{os.getpid()}"
    bus_config, link = config.bus, config.link
    found = [
        Login(
            "device bus",
            bus_config.socket or f"{bus_config.host}:{bus_config.port}",
            "bus.socket" if bus_config.socket else "bus.host / bus.port",
            bus_config.username,
            "bus.username",
            "bus.password_file",
            bus_config.password_file,
            lambda: bus.bus_client(bus_config, doctor_id),
        )
    ]
    if link.socket:
        # There the link is the bus's user, but when that broker is its only one and
        # link.username is set (`link_outside.login`).
        as_bus = link.phones_apart or not link.username
        if not (as_bus and link.socket == bus_config.socket):  # else: the login above
            found.append(
                Login(
                    "phones' broker" if link.phones_apart else "outside broker",
                    link.socket,
                    "link.socket",
                    bus_config.username if as_bus else link.username,
                    "bus.username" if as_bus else "link.username",
                    "bus.password_file" if as_bus else "link.password_file",
                    bus_config.password_file if as_bus else link.password_file,
                    lambda: link_outside.client(
                        config, over_socket=True, tls=None, will_topic=None, visitor=doctor_id
                    ),
                )
            )
    if link.home_host is not None:

        def home() -> aiomqtt.Client:
            # Only when it is TLS: for plaintext, tls_context would log its warning, which
            # `check_brokers` gives as a line of its own.
            tls = link_outside.tls_context(link) if link.uses_tls else None
            return link_outside.client(
                config, over_socket=False, tls=tls, will_topic=None, visitor=doctor_id
            )

        found.append(
            Login(
                "home broker",
                f"{link.home_host}:{link.broker_port}",
                "link.host / link.port",
                link.username,
                "link.username",
                "link.password_file",
                link.password_file,
                home,
                home=True,
            )
        )
    return found


def _code(rc: int | ReasonCode | None) -> int | None:
    return rc.value if isinstance(rc, ReasonCode) else rc


def refused(login: Login, exc: BaseException) -> Finding:
    """The one line for a login that failed with `exc`, naming what to fix."""
    what = f"{login.name} {login.where}"
    if isinstance(exc, aiomqtt.MqttCodeError) and _code(exc.rc) in NOT_AUTHORISED:
        if login.username is None:
            return Finding(
                "broker",
                "FAIL",
                f"{what}: refused a login without a user name",
                f"set {login.user_key} and {login.password_key}",
            )
        shown = f" ({login.password_file})" if login.password_file else " (none set)"
        return Finding(
            "broker",
            "FAIL",
            f"{what}: not authorised as {login.username!r}",
            f"check {login.password_key}{shown} and {login.user_key}",
        )
    # aiomqtt turns the socket's error into its own, raised in the handling of the first.
    cause = exc.__context__ if isinstance(exc, aiomqtt.MqttError) else exc
    running = (
        "is mosquitto running? systemctl status mosquitto"
        if login.socket
        else (f"is the broker running? check {login.where_keys}")
    )
    if isinstance(cause, ssl.SSLCertVerificationError):
        return Finding(
            "broker",
            "FAIL",
            f"{what}: TLS: certificate not trusted ({cause.verify_message})",
            "check link.cafile (the CA that signed the broker's certificate) and "
            "that link.host is a name on that certificate",
        )
    if isinstance(cause, ssl.SSLError):
        return Finding(
            "broker",
            "FAIL",
            f"{what}: TLS: {cause.reason or cause}",
            "check link.tls and link.port (8883 is usually TLS, 1883 plaintext)",
        )
    if isinstance(cause, FileNotFoundError):
        return Finding("broker", "FAIL", f"{what}: no such socket", running)
    if isinstance(cause, ConnectionRefusedError):
        return Finding("broker", "FAIL", f"{what}: connection refused, no broker there", running)
    if isinstance(cause, PermissionError):
        return Finding(
            "broker",
            "FAIL",
            f"{what}: permission denied",
            "run it as a member of group pendant-bus, or as root",
        )
    if isinstance(cause, socket.gaierror):
        return Finding(
            "broker",
            "FAIL",
            f"{what}: unknown host ({cause.strerror})",
            f"check {login.where_keys} and DNS",
        )
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError) or "timed out" in str(exc):
        return Finding(
            "broker",
            "FAIL",
            f"{what}: no answer within {LOGIN_TIMEOUT_S:g} s",
            f"check {login.where_keys} and the network",
        )
    if isinstance(cause, OSError):
        return Finding("broker", "FAIL", f"{what}: {cause.strerror or cause}", running)
    return Finding("broker", "FAIL", f"{what}: {exc}", running)


async def _availability(client: aiomqtt.Client, topic: str) -> bytes | None:
    """What is retained on `topic`, None if nothing is (or this login may not read it)."""
    await client.subscribe(topic, qos=0, timeout=LOGIN_TIMEOUT_S)
    try:
        async with asyncio.timeout(RETAINED_WAIT_S):
            async for message in client.messages:
                return link_outside.payload_of(message)
    except TimeoutError:
        pass
    return None


def link_state(login: Login, topic: str, payload: bytes | None) -> Finding:
    """How the link stands with the home broker, from what it retained there."""
    where = f"the {login.name} {login.where}"
    look = "systemctl status pendant-link; journalctl -u pendant-link -n 50"
    if payload == b"online":
        return Finding(
            "link",
            "OK",
            f"connected to {where} (its availability there: online; "
            "the link connects itself, there is no mosquitto bridge)",
        )
    if payload == b"offline":
        return Finding(
            "link",
            "FAIL",
            f"not connected to {where}: its availability there "
            "says offline (stopped, or dropped off)",
            look,
        )
    if payload is None:
        return Finding(
            "link",
            "WARN",
            f"has not announced itself on {where}: nothing retained on {topic}",
            f"{look}; or {login.username or 'this login'!r} may not read it",
        )
    shown = payload[:40].decode("utf-8", "replace")
    return Finding(
        "link",
        "WARN",
        f"{topic} on {where} holds {shown!r}, not online/offline",
        "another client publishes there: check link.topic_prefix and device_id",
    )


async def _log_in(login: Login, topic: str) -> list[Finding]:
    try:
        client = login.connect()
    except PendantError as exc:  # the password or CA file
        unreadable = login.password_file is not None and not os.access(login.password_file, os.R_OK)
        fix = "run the doctor as root (sudo)" if unreadable and os.geteuid() != 0 else ""
        return [Finding("broker", "FAIL", f"{login.name} {login.where}: {exc}", fix)]
    found: list[Finding] = []
    try:
        async with asyncio.timeout(LOGIN_TIMEOUT_S), client:
            who = f"as {login.username!r}" if login.username else "without a user name"
            found.append(Finding("broker", "OK", f"{login.name} {login.where}: logged in {who}"))
            if login.home:
                found.append(link_state(login, topic, await _availability(client, topic)))
    except (aiomqtt.MqttError, OSError) as exc:  # TimeoutError is an OSError
        if not found:
            return [refused(login, exc)]
        # Logged in: what failed afterwards is no login failure.
        if login.home and len(found) == 1:
            found.append(Finding("link", "WARN", f"cannot tell: {exc or type(exc).__name__}"))
    return found


async def _log_in_all(found: list[Login], topic: str) -> list[Finding]:
    # Side by side: a broker that does not answer costs its timeout once, not once a broker.
    results = await asyncio.gather(*(_log_in(login, topic) for login in found))
    return [finding for result in results for finding in result]


def check_brokers(config: Config, root: Path = ROOT) -> Iterator[Finding]:
    """The brokers' findings: a warning for a plaintext home broker, then one login to each
    broker (`logins`, side by side, each within LOGIN_TIMEOUT_S) and how the link stands at home.

    Blocks while it logs in, in an event loop of its own (asyncio.run): not from inside a
    running one. A single FAIL, and no login tried, when the link's passwords are root's."""
    as_link = as_the_link(config, root)
    if as_link is None:
        secrets = Layout(root).secrets
        yield Finding(
            "broker",
            "FAIL",
            f"no login tried: the link's passwords in {secrets} are root's",
            "run the doctor as root (sudo)",
        )
        return
    link = as_link.link
    if link.home_host is not None and not link.uses_tls and not link.loopback:
        yield Finding(
            "broker",
            "WARN",
            f"home broker {link.home_host}:{link.broker_port}: "
            "plaintext (link.tls = false): its password and every event cross the "
            "network readable",
            "TLS: link.tls = true and link.cafile",
        )
    if link.home_host is None:
        yield Finding(
            "link", "OK", f"no home broker (link.host unset): phones only, on {link.socket}"
        )
    topic = f"{link.topic_prefix}/{as_link.device_id}/availability"
    yield from asyncio.run(_log_in_all(logins(as_link), topic))
