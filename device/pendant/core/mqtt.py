"""The MQTT client every process builds its connections from, and the secrets it logs in with.

No pydantic here: the web server logs in to the bus with these too. `client` is the one place a
connection's address (a unix socket, or host and port with optional TLS) and login are put
together; `pendant.core.bus` builds a component's bus client from its config on top of it, the
link its outside brokers' (`pendant.link.outside`). `unreachable` is the one place a broker's
failure becomes a `BusError` that names what to fix.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import ssl
import stat
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from pendant.core.errors import BusError, ConfigError

T = TypeVar("T")


def _in_credentials_directory(p: Path) -> bool:
    """Whether `p` is one of this service's systemd credentials (LoadCredential=)."""
    own = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(own) and p.resolve().parent == Path(own).resolve()


def read_secret(path: str | None, key: str) -> str | None:
    """A password from a file; refuses files others can read (only its service may read it)."""
    if not path:
        return None
    p = Path(path)
    try:
        mode = p.stat().st_mode
        value = p.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {p}: {exc.strerror}") from None
    # systemd 254 and later hand a service with User= its credentials as 0440, in a directory
    # of its own that only it can enter (trixie's 257 does): the group bits there let no one in.
    others = stat.S_IRWXO if _in_credentials_directory(p) else stat.S_IRWXG | stat.S_IRWXO
    if mode & others:
        raise ConfigError(f"{key}: {p} is readable by others: chmod 600 {p}")
    if not value:
        raise ConfigError(f"{key}: {p} is empty")
    return value


def private_client_id(base: str, password: str | None) -> str:
    """`base` tagged with what only the holder of `password` can compute. A broker keys a
    session by client id alone, whoever logs in: any other login that connected with a known
    id would close this client's connection and, with a clean session, drop its queue (what
    the ears said while the link restarted). The tag is the same on every start, so the
    session is kept."""
    if not password:
        return base
    tag = hmac.new(password.encode(), base.encode(), hashlib.sha256).hexdigest()[:16]
    return f"{base}-{tag}"


class Client(aiomqtt.Client):
    """An aiomqtt client whose waits on the broker never lose a cancellation.

    aiomqtt bounds each of them (CONNACK, SUBACK, PUBACK, the disconnect) with
    `asyncio.wait_for`, which on Python 3.11 returns the result instead of raising when the
    cancellation comes in the same loop turn as the broker's answer (fixed in 3.12). The task
    cancelled then goes on as if nothing had happened: a link stopped while a PUBACK was on
    its way kept running its loops, and `systemctl stop` would wait for SIGKILL.
    `asyncio.timeout` raises the cancellation whatever else has happened.
    """

    async def _wait_for(self, fut: Awaitable[T], timeout: float | None) -> T:
        """`fut`, within `timeout` seconds (None: the client's own; math.inf: no limit)."""
        if timeout is None:
            timeout = self.timeout
        try:
            async with asyncio.timeout(None if timeout == math.inf else timeout):
                return await fut
        except TimeoutError:
            raise aiomqtt.MqttError("Operation timed out") from None


# The port a unix-socket connection names: paho wants one, mosquitto ignores it.
SOCKET_PORT = 1883
# CONNACK codes that refuse the login (MQTT 3.1.1: 4, 5; MQTT 5: 134, 135).
NOT_AUTHORISED = frozenset({4, 5, 134, 135})


def client(
    *,
    socket: str | os.PathLike[str] | None = None,
    host: str | None = None,
    port: int = SOCKET_PORT,
    tls_context: ssl.SSLContext | None = None,
    client_id: str | None = None,
    username: str | None = None,
    password: str | None = None,
    **options: Any,
) -> Client:
    """A `Client` of the broker on unix `socket`, or else at `host`:`port` (with TLS when
    `tls_context` is given; never over the socket, where there is no network to protect).

    `client_id` is made private to this login (`private_client_id`); None: a random id, as
    aiomqtt picks. `options` go to aiomqtt as they are (clean_session, will, protocol, ...).
    A socket with a TLS context is a caller's mistake (it would lose its TLS unseen): ValueError.
    """
    if socket and tls_context is not None:
        raise ValueError("a unix socket carries no TLS: pass a host for a TLS connection")
    where: dict[str, Any] = (
        {"hostname": os.fspath(socket), "port": SOCKET_PORT, "transport": "unix"}
        if socket
        else {"hostname": host, "port": port, "tls_context": tls_context}
    )
    if client_id is not None:
        options["identifier"] = private_client_id(client_id, password)
    return Client(**where, username=username, password=password, **options)


def unreachable(exc: aiomqtt.MqttError, where: str, login: str, running: str) -> BusError:
    """`exc` (a broker that failed) as the one-line `BusError` the CLI prints: where, what
    happened, and what to fix: `login` (the settings to check) when the broker refused the
    login, `running` (how to bring it up or which address to check) otherwise."""
    rc = getattr(exc, "rc", None)
    code = rc.value if isinstance(rc, ReasonCode) else rc
    fix = f"check {login}" if code in NOT_AUTHORISED else running
    return BusError(f"bus at {where}: {str(exc) or type(exc).__name__}: {fix}")
