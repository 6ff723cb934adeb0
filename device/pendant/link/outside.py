"""The link's connections to outside brokers: who it logs in as, over what, and how it retries.

To `link.host` (the home broker) the link speaks TLS (`link.tls`, default on but for a loopback
host), checking the broker's certificate against `link.cafile` (default: the system CA store)
and its name against `link.host`; plaintext to another host needs `link.tls = false` and is
warned about at start. Over `link.socket` (the device-local mosquitto) there is no network to
protect, and there the link is the same user as on the bus.

Every connection is MQTT 5 with a session that never expires (as 3.1.1's clean_session false),
for the subscription options of commands and the messages' expiry (`pendant.link.sender`), and
carries a retained `offline` as its last will: on the home broker the will says that the whole
pendant dropped off (power, Wi-Fi), not only the link. Each broker has its own reconnect loop
(`Backoff`), so an outage of one never blocks another. Every wait on a broker is bounded by
`TIMEOUT_S`.

Why a connection failed (`outside_state_of`) goes on the bus as `LinkState`, for the LED:
"no Wi-Fi" (the network is at fault) or "no broker" (the broker, its TLS or the login is).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Literal

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pendant.core import mqtt
from pendant.core.config import Config, LinkConfig
from pendant.core.errors import PendantError
from pendant.core.mqtt import Client, read_secret
from pendant.link.outbox import RETRY_S

log = logging.getLogger("pendant.link.service")

RECONNECT_S = 1.0
RECONNECT_MAX_S = 5.0
TIMEOUT_S = 10.0
# MQTT 5 sessions end when the client leaves unless they say otherwise: never, as 3.1.1's
# clean_session false (the broker's persistent_client_expiration still applies).
SESSION_EXPIRY_S = 0xFFFFFFFF


# What a connect() gets when the pendant itself has no way out: no route (Wi-Fi down, no
# default gateway), no address on the interface, the interface down.
NO_NETWORK_ERRNOS = frozenset(
    {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL}
)


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it came from: aiomqtt raises its MqttError `from None` over the
    OSError, which keeps it as `__context__`."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def outside_state_of(exc: BaseException) -> Literal["no_network", "no_broker"]:
    """Why a connection to an outside broker failed, as the wearer can act on it.

    "no_network": the name did not resolve or there is no route (the pendant is off the
    Wi-Fi, or the network has no way to the broker). "no_broker": everything else, the
    network being there: refused, no answer in time, a CONNACK that refuses the login, TLS
    that fails (a wrong CA, a wrong name).
    """
    for cause in _causes(exc):
        # Before OSError: both are OSErrors, and their errno is not a network one.
        if isinstance(cause, socket.gaierror):
            return "no_network"
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return "no_broker"
        if isinstance(cause, OSError) and cause.errno in NO_NETWORK_ERRNOS:
            return "no_network"
    return "no_broker"


def payload_of(message: aiomqtt.Message) -> bytes:
    """A message's payload as bytes, whatever type aiomqtt gave it: b"" for none (an empty
    retained message), text and numbers encoded in UTF-8."""
    p = message.payload
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return b"" if p is None else str(p).encode()


class Backoff:
    """Reconnect delays, and one log line per outage rather than one per attempt.

    `tick`, if given, runs at least every `tick_s` while the delay lasts: a sender proves there
    that it is waiting for the broker, not stuck (see `pendant.link.sender.Side.check`).
    """

    def __init__(
        self, what: str, tick: Callable[[], None] | None = None, tick_s: float = RETRY_S
    ) -> None:
        self.what = what
        self.delay = RECONNECT_S
        self.tick = tick
        self.tick_s = tick_s

    async def failed(self, exc: Exception) -> None:
        """Logs that `exc` made the broker unreachable (an outage's first failure as a warning,
        the rest at debug), then sleeps the delay out, calling `tick` meanwhile; the next delay
        is twice as long, up to RECONNECT_MAX_S."""
        level = logging.WARNING if self.delay == RECONNECT_S else logging.DEBUG
        log.log(level, "link: %s unreachable (%s); retrying", self.what, exc)
        deadline = time.monotonic() + self.delay
        while True:
            if self.tick is not None:
                self.tick()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(remaining, self.tick_s))
        self.delay = min(self.delay * 2, RECONNECT_MAX_S)

    def ok(self) -> None:
        """Connected: the next failure starts a new outage, logged as a warning and retried after
        RECONNECT_S."""
        self.delay = RECONNECT_S


def tls_context(link: LinkConfig) -> ssl.SSLContext | None:
    """The TLS the link speaks to link.host, or None for plaintext (see `LinkConfig.tls`).

    Checked at start, so a missing or wrong CA file is one line, not a reconnect loop.
    """
    if not link.uses_tls:
        if link.home_host is not None and not link.loopback:
            log.warning(
                "link: plaintext to %s:%d (link.tls = false): its password and every event "
                "cross the network readable",
                link.home_host,
                link.broker_port,
            )
        return None
    try:
        # Verifies the chain and that the certificate names link.host; TLS 1.2 at least.
        context = ssl.create_default_context(cafile=link.cafile)
    except ssl.SSLError as exc:
        raise PendantError(
            f"link.cafile {link.cafile}: not a PEM CA certificate ({exc.reason})"
        ) from None
    except OSError as exc:
        raise PendantError(f"link.cafile {link.cafile}: {exc.strerror or exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def login(config: Config, over_socket: bool) -> tuple[str | None, str | None]:
    """The username and password for one outside broker."""
    link, bus_config = config.link, config.bus
    if over_socket and (link.phones_apart or not link.username):
        # The device-local broker: there the link is the same user as on the bus.
        return bus_config.username, read_secret(bus_config.password_file, "bus.password_file")
    return link.username, read_secret(link.password_file, "link.password_file")


def client(
    config: Config,
    *,
    over_socket: bool,
    tls: ssl.SSLContext | None,
    will_topic: str | None,
    visitor: str | None = None,
) -> Client:
    """An MQTT 5 client of one outside broker: link.socket's, or link.host's with `tls`.

    `will_topic`: where its retained `offline` last will goes (None: no will). `visitor`: the
    client id of another program that logs in as the link (`pendant doctor`); its session ends
    when it leaves, so neither the link's session (another id) nor a session left behind on
    the broker comes of it.
    """
    link = config.link
    username, password = login(config, over_socket)
    session: Properties | None = None
    if visitor is None:
        session = Properties(PacketTypes.CONNECT)
        session.SessionExpiryInterval = SESSION_EXPIRY_S
    return mqtt.client(
        socket=link.socket if over_socket else None,
        host=link.home_host,
        port=link.broker_port,
        tls_context=None if over_socket else tls,  # the socket has no network to protect
        # Private to this login: no other client of that broker can take the session over.
        client_id=visitor or f"pendant-{config.device_id}",
        username=username,
        password=password,
        # MQTT 5 for the subscription options of commands and the messages' expiry.
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=visitor is not None,
        properties=session,
        # On the home broker too: the pendant's entities there go unavailable when the
        # pendant drops off the network (power, Wi-Fi), not only when the link stops.
        will=None
        if will_topic is None
        else aiomqtt.Will(will_topic, b"offline", qos=1, retain=True),
        timeout=TIMEOUT_S,
    )
