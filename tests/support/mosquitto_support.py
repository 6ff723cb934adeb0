"""A real mosquitto running the config `pendant.setup.provision` renders, and paho clients
that check its rules over the listener a real client would use (test_mosquitto_config, and the
tests of the services and the phone's side that run on such a broker). Every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pendant.app.local_broker import free_port
from pendant.setup.provision import Provisioned, provision

needs_mosquitto = pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto is not installed (apt install mosquitto)",
)

DEVICE = "test-dev"
TIMEOUT_S = 10.0
START_TIMEOUT_S = 10.0
# Tests run mosquitto as whoever runs them: started as root, mosquitto would otherwise become
# the `mosquitto` user, which cannot read the 0600 files of a scratch root.
ME = pwd.getpwuid(os.getuid()).pw_name

Msg = tuple[str, bytes, bool]


# --- a real broker running the rendered config ---------------------------------------------


def _mosquitto() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _provision_for_test(root: Path, **kw: object) -> Provisioned:
    kw.setdefault("device_id", DEVICE)
    return provision(
        root,
        tls_port=free_port(),
        ws_port=free_port(),
        bind_address="127.0.0.1",
        run_as=ME,
        **kw,  # type: ignore[arg-type]
    )


def _reachable(prov: Provisioned) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            s.connect(str(prov.socket))
        for port in (prov.settings.tls_port, prov.settings.ws_port):
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
    except OSError:
        return False
    return True


@contextlib.contextmanager
def running(prov: Provisioned) -> Iterator[subprocess.Popen[bytes]]:
    """mosquitto -c <the rendered pendant.conf>, until every listener accepts connections."""
    log = prov.layout.root / "mosquitto.log"
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [_mosquitto(), "-c", str(prov.conf)], stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _reachable(prov):
            if proc.poll() is not None:
                pytest.fail(f"mosquitto exited at start: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto not listening after {START_TIMEOUT_S} s")
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=TIMEOUT_S)


# --- MQTT clients --------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """How a client reaches a broker: a unix socket, TLS, WebSocket over TLS, or plain TCP."""

    transport: str
    host: str
    port: int = 1883
    ca: Path | None = None


def endpoint(prov: Provisioned, via: str) -> Endpoint:
    if via == "unix":
        return Endpoint("unix", str(prov.socket))
    port = prov.settings.tls_port if via == "tls" else prov.settings.ws_port
    transport = "tcp" if via == "tls" else "websockets"
    return Endpoint(transport, "127.0.0.1", port, prov.ca_cert)


class Client:
    """A paho client whose callbacks feed queues; every wait has a timeout."""

    def __init__(
        self, where: Endpoint, user: str | None, password: str | None, system_ca: bool = False
    ) -> None:
        self.where = where
        self.messages: queue.Queue[Msg] = queue.Queue()
        self._connack: queue.Queue[ReasonCode] = queue.Queue()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.disconnected = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            transport=where.transport,  # type: ignore[arg-type]
        )
        if user is not None:
            c.username_pw_set(user, password)
        if where.ca is not None or system_ca:
            # Verifies the chain and that the certificate names 127.0.0.1.
            c.tls_set(ca_certs=None if system_ca else str(where.ca))
        c.on_connect = lambda _c, _u, _f, rc, _p: self._connack.put(rc)
        c.on_subscribe = lambda _c, _u, _m, rcs, _p: self._subacks.put(list(rcs))
        c.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload, bool(m.retain)))
        c.on_disconnect = lambda *_: self.disconnected.set()
        self.paho = c

    def open(self) -> ReasonCode:
        """Connect; the broker's CONNACK reason (a refusal is a result, not an error)."""
        self.paho.connect(self.where.host, self.where.port, keepalive=30)
        self.paho.loop_start()
        try:
            return self._connack.get(timeout=TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"no CONNACK within {TIMEOUT_S} s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.paho.disconnect()
        self.paho.loop_stop()

    def subscribe(self, *topics: str) -> list[ReasonCode]:
        granted: list[ReasonCode] = []
        for t in topics:
            self.paho.subscribe(t, qos=1)
            try:
                granted += self._subacks.get(timeout=TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"no SUBACK for {t} within {TIMEOUT_S} s")
        return granted

    def publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        """QoS 1, back once the broker acknowledged (i.e. routed or dropped) it."""
        info = self.paho.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published(), f"no PUBACK for {topic} within {TIMEOUT_S} s"

    def until(self, topic: str, payload: bytes | str) -> list[Msg]:
        """Messages received before (topic, payload) arrives; fails if it does not."""
        want = payload.encode() if isinstance(payload, str) else payload
        seen: list[Msg] = []
        deadline = time.monotonic() + TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.messages.get(timeout=left)
            except queue.Empty:
                break
            if msg[0] == topic and msg[1] == want:
                return seen
            seen.append(msg)
        pytest.fail(f"{topic} {want!r} not received within {TIMEOUT_S} s; got {seen}")

    def fence(self, publisher: Client, topic: str) -> list[Msg]:
        """`publisher` sends a unique message this client may read; what came before it."""
        token = uuid.uuid4().hex
        publisher.publish(topic, token)
        return self.until(topic, token)


def attempt(where: Endpoint, user: str | None, password: str | None) -> ReasonCode:
    c = Client(where, user, password)
    try:
        return c.open()
    finally:
        c.close()


def _accepted_eventually(where: Endpoint, user: str, password: str, want: bool) -> bool:
    """mosquitto reloads its password file and ACL asynchronously after SIGHUP: retry a
    bounded number of times until the answer is `want`."""
    for _ in range(50):
        if (not attempt(where, user, password).is_failure) == want:
            return True
        time.sleep(0.1)
    return False
