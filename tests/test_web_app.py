"""The companion app in a real browser, against the pendant's real mosquitto.

One scratch pendant: the mosquitto config `pendant.provision` renders (free ports, 127.0.0.1);
the app's web server (`python -m pendant.webserver`, as pendant-web.service runs it) with the
broker's own server certificate and key, on a port of its own; the real link on the broker's
unix socket as its outside broker (as on the device); a stand-in for the ears, logged in as
`ears`, that publishes what the ears publish on the bus (intents, status) and records the
commands the link hands them. A phone is paired with `pendant.pairing`, and headless chromium
(the system's, steered by tests/web/driver.mjs with playwright-core, HTTP/2 left on as on a
phone) opens the pairing link, trusting the pendant's server certificate by its public key.
The service worker must install, and the app must open with the web server gone and the
browser offline, showing the last state and the feed it kept.

Screenshots land in the test's tmp dir, or in docs/ (companion-*.png, which the README shows)
with `make screenshots`, so an ordinary test run leaves the work tree as it was.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pendant import pairing
from pendant.config import BusConfig, Config, LinkConfig
from pendant.events import Intent, NotRecognized, Slot, Status, parse_event
from pendant.link import Link
from pendant.provision import Provisioned

from .test_mosquitto_config import DEVICE, Client, _provision_for_test, endpoint, running
from .test_webserver import WEB, WebServer

REPO = Path(__file__).resolve().parents[1]
WEB_TESTS = REPO / "tests" / "web"
DOCS = REPO / "docs" if os.environ.get("PENDANT_SCREENSHOTS") else None
CHROMIUM = Path("/usr/bin/chromium")
STEP_S = 20.0
TIMEOUT_S = 10.0

pytestmark = [
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="mosquitto is not installed (apt install mosquitto)",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is absent (apt install chromium)"),
    pytest.mark.skipif(shutil.which("node") is None, reason="node is absent (apt install nodejs)"),
    pytest.mark.skipif(
        not (WEB_TESTS / "node_modules" / "playwright-core").is_dir(),
        reason="tests/web/node_modules is absent: run `npm ci --prefix tests/web` (make test does)",
    ),
]


# --- the browser ---------------------------------------------------------------------------


class Browser:
    """tests/web/driver.mjs: one JSON request a line in, one answer a line out, each bounded."""

    def __init__(self, user_data: Path, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            ["node", str(WEB_TESTS / "driver.mjs"), str(CHROMIUM), str(user_data), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=WEB_TESTS,
        )
        self._answers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)

    def __call__(self, op: str, **kw: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        try:
            answer = json.loads(self._answers.get(timeout=STEP_S + 5))
        except queue.Empty:
            pytest.fail(f"browser step {op} {kw}: no answer within {STEP_S + 5} s")
        if not answer["ok"]:
            logs = "" if op == "logs" else "\n".join(self("logs"))
            pytest.fail(f"browser step {op} {kw}: {answer['error']}\npage log:\n{logs}")
        return answer["value"]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self("close")
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT_S)


def spki_sha256(cert: Path) -> str:
    """base64 SHA-256 of the certificate's public key, for --ignore-certificate-errors-spki-list:
    chromium then trusts exactly this server key, nothing else (no blanket --ignore-...)."""
    pub = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"],
        input=pub,
        check=True,
        capture_output=True,
        timeout=TIMEOUT_S,
    ).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextlib.contextmanager
def browser(tmp: Path, server_cert: Path) -> Iterator[Browser]:
    b = Browser(
        tmp / "chromium-profile",
        [
            "--no-sandbox",
            "--disable-gpu",
            f"--ignore-certificate-errors-spki-list={spki_sha256(server_cert)}",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--disable-dev-shm-usage",
        ],
    )
    try:
        b("launch")
        yield b
    finally:
        b.close()


# --- the pendant's side --------------------------------------------------------------------


class LinkThread:
    """The real link, in its own event loop on a thread, until stopped."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.link: Link | None = None
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        # Made here: its outbox (sqlite) belongs to the thread that made it.
        self.link = Link(self.config)
        self._task = self.loop.create_task(self.link.run())
        with contextlib.suppress(asyncio.CancelledError):
            self.loop.run_until_complete(self._task)

    def start(self) -> None:
        self.thread.start()

    def ready(self) -> bool:
        link = self.link
        return link is not None and link.connected.is_set() and link.bus_ready.is_set()

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(timeout=TIMEOUT_S)


class Ears:
    """Stands in for the ears on the bus: user `ears`, its topics, its ACL."""

    def __init__(self, socket: Path, password: str) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        connected = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-ears-{uuid.uuid4().hex[:8]}",
            transport="unix",
        )
        c.username_pw_set("ears", password)
        c.on_connect = lambda cl, _u, _f, rc, _p: (
            cl.subscribe("pendant-bus/cmd/#", qos=1),
            connected.set(),
        )
        c.on_message = lambda _c, _u, m: self.commands.put(
            json.loads(parse_event(m.payload).model_dump_json())
        )
        c.connect(str(socket), 1883, keepalive=30)
        c.loop_start()
        assert connected.wait(TIMEOUT_S), "ears: no CONNACK"
        self.paho = c

    def publish(self, event: Intent | NotRecognized | Status) -> None:
        info = self.paho.publish(f"pendant-bus/{event.type}", event.to_json(), qos=1)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published()

    def command(self) -> dict[str, Any]:
        try:
            return self.commands.get(timeout=TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"the ears got no command within {TIMEOUT_S} s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.paho.disconnect()
        self.paho.loop_stop()


def _wait(predicate: Any, what: str) -> None:
    done = threading.Event()
    for _ in range(int(TIMEOUT_S / 0.05)):
        if predicate():
            return
        done.wait(0.05)
    pytest.fail(f"{what}: not within {TIMEOUT_S} s")


# --- the test ------------------------------------------------------------------------------


def test_the_companion_app_pairs_shows_intents_mutes_and_is_revoked(tmp_path: Path) -> None:
    prov = _provision_for_test(tmp_path / "root")
    shots = DOCS or tmp_path
    shots.mkdir(exist_ok=True)
    with running(prov) as broker:
        config = Config(
            device_id=DEVICE,
            bus=BusConfig(
                socket=str(prov.socket),
                username="link",
                password_file=str(prov.password_file("link")),
            ),
            link=LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox")),
        )
        link = LinkThread(config)
        link.start()
        ears = Ears(prov.socket, prov.password("ears"))
        try:
            _wait(link.ready, "the link connected")
            ears.publish(Status(device_id=DEVICE, state="ready", mic_muted=False, battery_pct=87))

            cert, key = prov.layout.conf_dir / "server.crt", prov.layout.conf_dir / "server.key"
            with WebServer(WEB, cert, key, log_dir=tmp_path) as web:
                phone = pairing.pair(prov.layout.root, "testphone", host="127.0.0.1",
                                     broker_pid=broker.pid, web_port=web.port)  # fmt: skip
                assert phone.url.startswith(f"https://127.0.0.1:{web.port}/#u=phone-")
                assert phone.url.endswith(f"&w={prov.settings.ws_port}")
                with browser(tmp_path, cert) as page:
                    _companion(page, phone, ears, prov, broker.pid, web, shots)
        finally:
            ears.close()
            link.stop()


def _refused(prov: Provisioned, phone: pairing.Pairing) -> bool:
    client = Client(endpoint(prov, "wss"), phone.user, phone.password)
    try:
        return client.open() != 0
    finally:
        client.close()


def _companion(
    page: Browser,
    phone: pairing.Pairing,
    ears: Ears,
    prov: Provisioned,
    pid: int,
    web: WebServer,
    shots: Path,
) -> None:
    page("goto", url=phone.url)
    page("wait_text", selector="#link", text="connected")
    # Served as HTTP/1.1 with its Content-Type, the service worker installs (page.evaluate
    # awaits the promise; the Python side bounds the step).
    assert page("eval", expr="navigator.serviceWorker.ready.then((r) => r.active.state)") in (
        "activating",
        "activated",
    )
    page("wait_text", selector="#sw", text="Works offline")
    protocol = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
    assert page("eval", expr=protocol) == "http/1.1"
    # The login is kept on the phone and gone from the address bar.
    assert page("eval", expr="location.hash") == ""
    assert json.loads(page("eval", expr="localStorage.getItem('pendant.pairing')"))["d"] == DEVICE
    page("wait_text", selector="#availability", text="online")
    page("wait_text", selector="#battery", text="87 %")
    assert page("attr", selector="#mic", name="aria-checked") == "false"

    ears.publish(
        Intent(
            device_id=DEVICE,
            name="HassTurnOn",
            text="turn on the kitchen lights",
            confidence=0.93,
            slots=[
                Slot(name="area", value="Kitchen", raw_value="kitchen", entity="area"),
                Slot(name="domain", value="light", raw_value="lights", entity="domain"),
            ],
        )
    )
    ears.publish(NotRecognized(device_id=DEVICE, text="play something nice", confidence=0.2))
    ears.publish(
        Intent(
            device_id=DEVICE,
            name="HassStartTimer",
            text="set a timer for five minutes",
            confidence=0.88,
            slots=[Slot(name="minutes", value=5, raw_value="five", entity="number")],
        )
    )
    page("wait_text", selector="#feed .event.intent", text="HassTurnOn")
    page("wait_text", selector="#feed .event.intent", text="HassStartTimer")
    page("wait_text", selector="#feed .event.not_recognized", text="play something nice")
    feed = page("text", selector="#feed")
    assert "Kitchen" in feed and "turn on the kitchen lights" in feed
    page("screenshot", path=str(shots / "companion-feed.png"), full_page=True)

    # Mute: the tap sends the command; the switch moves only when the pendant reports it.
    page("click", selector="#mic")
    command = ears.command()
    assert (command["name"], command["mic"]) == ("mute", True)
    assert page("attr", selector="#mic", name="aria-checked") == "false"
    ears.publish(Status(device_id=DEVICE, state="muted", mic_muted=True, battery_pct=86))
    page("wait_attr", selector="#mic", name="aria-checked", value="true")
    page("wait_text", selector="#battery", text="86 %")
    page("screenshot", path=str(shots / "companion-muted.png"))
    page("click", selector="#mic")
    assert (ears.command()["mic"]) is False
    ears.publish(Status(device_id=DEVICE, state="ready", mic_muted=False, battery_pct=86))
    page("wait_attr", selector="#mic", name="aria-checked", value="false")

    page("click", selector="#identify")
    assert ears.command()["name"] == "identify"
    assert page("eval", expr="document.querySelector('#capture').disabled") is True

    # The feed is kept on the phone: a reload shows it before any message arrives.
    page("reload")
    page("wait_text", selector="#feed .event.intent", text="HassTurnOn")
    page("wait_text", selector="#link", text="connected")
    # That reload was served through the service worker, which now controls the page.
    assert page("eval", expr="navigator.serviceWorker.controller !== null") is True

    # Offline, with the web server gone: the app comes from the phone's copy and shows the
    # last state the pendant reported, marked stale, and the feed.
    web.stop()
    page("set_offline", offline=True)
    try:
        page("reload")
        page("wait_text", selector="#feed .event.intent", text="HassStartTimer")
        page("wait_text", selector="#battery", text="86 %")
        page("wait_text", selector="#link", text="disconnected")
        page("wait_attr", selector="#stale", name="hidden", value=None)
        assert "last reported" in page("text", selector="#stale")
        assert page("attr", selector="#mic", name="aria-checked") == "false"
        page("screenshot", path=str(shots / "companion-offline.png"))
    finally:
        page("set_offline", offline=False)
        web.start()
    page("reload")
    page("wait_text", selector="#link", text="connected")
    page("click", selector="#clear")
    page("wait_attr", selector="#empty", name="hidden", value=None)
    page("reload")
    page("wait_text", selector="#link", text="connected")
    assert page("eval", expr="document.querySelectorAll('#feed li').length") == 0

    # Revoked: the account is gone and the reloaded broker refuses the phone.
    assert pairing.revoke(prov.layout.root, "testphone", broker_pid=pid)
    _wait(lambda: _refused(prov, phone), "mosquitto reloaded the password file")
    page("reload")
    page("wait_text", selector="#link", text="refused")
    page("screenshot", path=str(shots / "companion-revoked.png"))
