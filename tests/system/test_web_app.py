"""The companion app in a real browser, against the pendant's real mosquitto.

One scratch pendant: the mosquitto config `pendant.setup.provision` renders (free ports, 127.0.0.1);
the app's web server (`python -m pendant.web`, as pendant-web.service runs it) with the
broker's own server certificate and key, on a port of its own; the real link on the broker's
unix socket as its outside broker (as on the device). Headless chromium (the system's, steered
by tests/web/driver.mjs with playwright-core, HTTP/2 left on as on a phone) trusts the
pendant's server certificate by its public key. In the first test the phone pairs as a wearer
pairs it: the very long hold on the body's (simulated) button opens the pairing window (the real
pairing service), the page at `/pair` shows the phone's code, the button is pressed that many
times, and the page goes on to the app with the login. The second pairs the same way, with the
real ears and eyes on the bus.

Two tests:

- The app itself, with stand-ins for the ears, eyes and body logged in as those users (their
  topics, their ACLs), needing no models: pairing, the service worker, the feed (intents, a
  scene with a hidden face), the mute switches following the reported status, "Read this",
  the app opening offline from its own copy, and revocation.
- The real pendant behind it: the real ears (`EarsService`: a recording played in real time
  through the simulated mic, VAD, pocketsphinx, NLU), the real eyes (`EyesService`: the
  simulated camera serving a bundled image, face guard, OCR) and the real link, each in its own
  event loop as in its own process. The intent in the feed came from audio; the text read came
  from an image; the sentence editor's sets are judged and run by the ears.

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
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pendant.core import bus
from pendant.core.config import (
    AudioConfig,
    BusConfig,
    Config,
    DetectorConfig,
    EscalateConfig,
    LinkConfig,
)
from pendant.core.errors import ModelError
from pendant.core.events import (
    Ask,
    Battery,
    Button,
    Camera,
    Event,
    Intent,
    Mic,
    NotRecognized,
    Scene,
    Slot,
    Voices,
    parse_event,
)
from pendant.core.model_cache import model_path
from pendant.ears.audio import BLOCK_CHUNKS, RATE_HZ, Chunk
from pendant.ears.audio.wav import WavSource
from pendant.eyes.camera import FileCamera, demo_images
from pendant.link.service import Link
from pendant.pairing import accounts as pairing
from pendant.setup.provision import PHONE_PREFIX, Provisioned
from tests.conftest import demo_config, speech_files
from tests.support.chat_server import chat_server_thread
from tests.support.mosquitto_support import (
    DEVICE,
    Client,
    _provision_for_test,
    endpoint,
    running,
)
from tests.system.test_pairing_window import (
    HOLD,
    MARGIN_S,
    Loop,
    hold_button,
    press,
    start_body,
    start_pairing,
)
from tests.system.test_webserver import WEB, WebServer

REPO = Path(__file__).resolve().parents[2]
WEB_TESTS = REPO / "tests" / "web"
DOCS = REPO / "docs" if os.environ.get("PENDANT_SCREENSHOTS") else None
CHROMIUM = Path("/usr/bin/chromium")
STEP_S = 20.0
TIMEOUT_S = 10.0
# Loading the ears' and eyes' models, and hearing a recording in real time, on a loaded machine.
SLOW_S = 60.0

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
        """One step; `timeout_ms` (default the driver's 15 s) bounds it in the browser."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        bound = kw.get("timeout_ms", STEP_S * 1000) / 1000 + 5
        try:
            answer = json.loads(self._answers.get(timeout=bound))
        except queue.Empty:
            pytest.fail(f"browser step {op} {kw}: no answer within {bound} s")
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


class LoopThread:
    """One component in its own event loop on a thread, as in its own process on the device.

    `build` runs on the thread (an outbox's sqlite belongs to the thread that made it) and
    returns the component; its `run(ready)` runs until cancelled, and `ready` tells when the
    component said it is.
    """

    def __init__(self, name: str, build: Callable[[], Any]) -> None:
        self.name = name
        self.build = build
        self.component: Any = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[Any] | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.component = self.build()
            self._task = self.loop.create_task(self.component.run(lambda _: self.ready.set()))
            self.loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # reported by check()
            self.error = exc

    def start(self) -> LoopThread:
        self.thread.start()
        return self

    def check(self) -> None:
        if self.error is not None:
            pytest.fail(f"{self.name} failed: {type(self.error).__name__}: {self.error}")

    def stop(self) -> None:
        if self._task is not None:
            self.loop.call_soon_threadsafe(self._task.cancel)
        self.thread.join(timeout=TIMEOUT_S)


def link_thread(config: Config) -> LoopThread:
    def build() -> Link:
        return Link(config)

    return LoopThread("link", build).start()


def link_ready(thread: LoopThread) -> bool:
    thread.check()
    link = thread.component
    return link is not None and link.connected.is_set() and thread.ready.is_set()


class StandIn:
    """Stands in for a component on the bus: logged in as its user, so held to its ACL; it
    records the commands the link hands on."""

    def __init__(self, socket: Path, user: str, password: str) -> None:
        self.user = user
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        connected = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{user}-{uuid.uuid4().hex[:8]}",
            transport="unix",
        )
        c.username_pw_set(user, password)
        c.on_connect = lambda cl, _u, _f, rc, _p: (
            cl.subscribe("pendant-bus/cmd/#", qos=1),
            connected.set(),
        )
        c.on_message = lambda _c, _u, m: self.commands.put(
            json.loads(parse_event(m.payload).model_dump_json())
        )
        c.connect(str(socket), 1883, keepalive=30)
        c.loop_start()
        assert connected.wait(TIMEOUT_S), f"{user}: no CONNACK"
        self.paho = c

    def publish(self, event: Event) -> None:
        info = self.paho.publish(bus.topic_of(event), event.to_json(), qos=1)
        info.wait_for_publish(timeout=TIMEOUT_S)
        assert info.is_published()

    def command(self) -> dict[str, Any]:
        try:
            return self.commands.get(timeout=TIMEOUT_S)
        except queue.Empty:
            pytest.fail(f"the {self.user} got no command within {TIMEOUT_S} s")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.paho.disconnect()
        self.paho.loop_stop()


def _wait(predicate: Any, what: str, timeout_s: float = TIMEOUT_S) -> None:
    done = threading.Event()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        done.wait(0.05)
    pytest.fail(f"{what}: not within {timeout_s} s")


def _link_config(prov: Provisioned, tmp_path: Path, chat_url: str | None = None) -> Config:
    """The demo home's link (its gate knows the home's words) on the provisioned bus; asking
    the chat server at `chat_url` when given (issue 18)."""
    escalate = EscalateConfig()
    if chat_url is not None:
        escalate = EscalateConfig(enabled=True, target="openai", url=chat_url, model="m")
    return demo_config().model_copy(
        update={
            "device_id": DEVICE,
            "bus": BusConfig(
                socket=str(prov.socket),
                username="link",
                password_file=str(prov.password_file("link")),
            ),
            "link": LinkConfig(socket=str(prov.socket), outbox_path=str(tmp_path / "outbox")),
            "escalate": escalate,
        }
    )


def _refused(prov: Provisioned, phone: pairing.Pairing) -> bool:
    client = Client(endpoint(prov, "wss"), phone.user, phone.password)
    try:
        return client.open() != 0
    finally:
        client.close()


@contextlib.contextmanager
def web_and_browser(prov: Provisioned, tmp_path: Path) -> Iterator[tuple[WebServer, Browser]]:
    """The app's web server as pendant-web.service runs it, with the broker's certificate and
    its bus login (which `/pair` needs), and a browser that trusts that certificate."""
    cert, key = prov.layout.conf_dir / "server.crt", prov.layout.conf_dir / "server.key"
    bus_login = ("--bus-socket", str(prov.socket),
                 "--bus-password-file", str(prov.password_file("web")))  # fmt: skip
    with (
        WebServer(WEB, cert, key, *bus_login, log_dir=tmp_path) as web,
        browser(tmp_path, cert) as page,
    ):
        yield web, page


def _pair_by_code(prov: Provisioned, web: WebServer, page: Browser) -> pairing.Pairing:
    """The phone pairs as the wearer pairs it: the very long hold on the body's simulated
    button opens the window, the page at `/pair` shows this phone's code (issue 14: a press
    accepts only the phone whose code it counts), the button is pressed that many times, and
    the page goes on to the app with the login. The body and the pairing service stop after."""
    loop = Loop()
    try:
        service, _ = start_pairing(loop, prov, window_s=60.0)
        # The battery the stand-in reports, unchanging, reported once.
        steady = {"simulated_start_pct": 87, "simulated_drain_pct_per_min": 0.0,
                  "battery_report_s": 3600.0, "battery_poll_s": 3600.0}  # fmt: skip
        body = start_body(loop, prov, **steady)
        hold_button(body, HOLD["pairing_hold_s"] + MARGIN_S)
        _wait(lambda: service.open_name is not None, "the pairing window opens")
        name = str(service.open_name)
        code_now = "document.querySelector('#code')?.innerText ?? null"

        def shows_code() -> bool:
            page("goto", url=f"https://127.0.0.1:{web.port}/pair")
            time.sleep(0.3)  # the web server learns of the offer over the bus
            return page("eval", expr=code_now) is not None

        _wait(shows_code, "/pair shows this phone's code")
        code = int(page("text", selector="#code"))
        assert 1 <= code <= 4
        press(body, code)
        # The waiting page comes back by itself and goes on to the app, login in the fragment.
        page("wait_text", selector="#link", text="connected")
        _wait(lambda: service.taken == [name], "the pairing window hears 'taken'")
    finally:
        loop.close()
    user = PHONE_PREFIX + name
    return pairing.Pairing(
        device_id=DEVICE,
        user=user,
        password=prov.password(user),
        host="127.0.0.1",
        port=web.port,
        ws_port=prov.settings.ws_port,
    )


# Replaces the page's speechSynthesis.speak with a recorder (headless chromium has no voices).
QUESTION = "what can I use instead of eggs"
ANSWER = "A mashed banana or a spoon of apple sauce."
RECORD_SPEECH = (
    "window.__spoken = []; window.speechSynthesis.speak = (u) => window.__spoken.push(u.text);"
)
# What was spoken, once something was (bounded: rejects after TIMEOUT_S).
SPOKEN = f"""new Promise((resolve, reject) => {{
  const until = Date.now() + {int(TIMEOUT_S * 1000)};
  (function poll() {{
    if (window.__spoken.length) resolve(window.__spoken);
    else if (Date.now() > until) reject(new Error("nothing was spoken"));
    else setTimeout(poll, 50);
  }})();
}})"""


def _feed_text(page: Browser, selector: str) -> str:
    return " ".join(page("text", selector=selector).split())


# --- a phone that does not trust the pendant's certificate (issue 15, item 6) ---------------


def test_the_app_says_the_certificate_is_not_trusted_instead_of_retrying_forever(
    tmp_path: Path,
) -> None:
    """The page loads (the browser was let through to it, as a wearer clicks past the warning)
    but the phone does not trust the certificate mosquitto's WebSocket presents: browsers never
    say why a WebSocket failed, so the app asks the web server whether the broker runs, and
    since it does, says the certificate is not trusted and links the trust page, which shows
    the CA's fingerprint as `pendant pair` prints it. With the broker stopped the same failures
    say so instead."""
    prov = _provision_for_test(tmp_path / "root")
    shots = DOCS or tmp_path
    shots.mkdir(exist_ok=True)
    # The web server presents another pendant's certificate, the one this browser trusts; the
    # broker's (this pendant's) it does not.
    trusted = _provision_for_test(tmp_path / "other", device_id="other-dev")
    cert = trusted.layout.conf_dir / "server.crt"
    key = trusted.layout.conf_dir / "server.key"
    args = ("--ca", str(prov.ca_cert), "--bus-socket", str(prov.socket),
            "--bus-password-file", str(prov.password_file("web")))  # fmt: skip
    with (
        running(prov) as broker,
        WebServer(WEB, cert, key, *args, log_dir=tmp_path) as web,
        browser(tmp_path, cert) as page,
    ):
        phone = pairing.pair(prov.layout.root, "anna", host="127.0.0.1", web_port=web.port,
                             broker_pid=broker.pid)  # fmt: skip
        page("goto", url=phone.url)
        slow = {"timeout_ms": int(SLOW_S * 1000)}
        page("wait_text", selector="#trust-problem", text="does not trust", **slow)
        page("wait_text", selector="#link", text="certificate not trusted")
        assert page("eval", expr="document.querySelector('#mic').disabled") is True
        page("screenshot", path=str(shots / "companion-untrusted.png"))

        page("click", selector="#trust-problem a")
        page("wait_text", selector="#fingerprint", text=":")
        assert page("text", selector="#fingerprint") == pairing.ca_fingerprint(prov.layout.root)
        assert page("attr", selector="#download", name="href") == "/ca.crt"
        guide = page("text", selector="main")
        assert "Settings › General › About › Certificate Trust Settings" in guide
        assert "Encryption & credentials › Install a certificate › CA certificate" in guide
        page("screenshot", path=str(shots / "companion-trust.png"), full_page=True)

        # Not the certificate's fault when the broker is down: the same failures say that.
        page("goto", url=f"https://127.0.0.1:{web.port}/")
        broker.terminate()
        broker.wait(timeout=TIMEOUT_S)
        page("wait_text", selector="#link", text="broker is down", **slow)
        assert page("eval", expr="document.querySelector('#trust-problem').hidden") is True


# --- the app, with stand-ins ---------------------------------------------------------------


def test_the_companion_app_pairs_shows_intents_mutes_and_is_revoked(tmp_path: Path) -> None:
    prov = _provision_for_test(tmp_path / "root")
    shots = DOCS or tmp_path
    shots.mkdir(exist_ok=True)
    reply = {"choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}}]}
    with running(prov) as broker, chat_server_thread(reply) as (chat_url, asked):
        link = link_thread(_link_config(prov, tmp_path, chat_url))
        ears = StandIn(prov.socket, "ears", prov.password("ears"))
        eyes = StandIn(prov.socket, "eyes", prov.password("eyes"))
        body = StandIn(prov.socket, "body", prov.password("body"))
        try:
            _wait(lambda: link_ready(link), "the link connected")
            ears.publish(Mic(device_id=DEVICE, state="ready", muted=False))
            eyes.publish(Camera(device_id=DEVICE, muted=False))
            body.publish(Battery(device_id=DEVICE, pct=87))

            with web_and_browser(prov, tmp_path) as (web, page):
                phone = _pair_by_code(prov, web, page)
                _companion(page, phone, ears, eyes, body, prov, broker.pid, web, shots)
            # The question went out once, as text, and nothing else of the wearer's did.
            # With what the camera had read a moment before, marked as data (issue 18).
            [sent] = [r["messages"][-1]["content"] for r in asked]
            assert sent.startswith(f"{QUESTION}\n\n(What the camera just read") and "KEEP" in sent
        finally:
            for stand_in in (ears, eyes, body):
                stand_in.close()
            link.stop()


def _companion(
    page: Browser,
    phone: pairing.Pairing,
    ears: StandIn,
    eyes: StandIn,
    body: StandIn,
    prov: Provisioned,
    pid: int,
    web: WebServer,
    shots: Path,
) -> None:
    # Served as HTTP/1.1 with its Content-Type, the service worker installs (page.evaluate
    # awaits the promise; the Python side bounds the step).
    assert page("eval", expr="navigator.serviceWorker.ready.then((r) => r.active.state)") in (
        "activating",
        "activated",
    )
    page("wait_text", selector="#sw", text="Works offline")
    protocol = "performance.getEntriesByType('navigation')[0].nextHopProtocol"
    assert page("eval", expr=protocol) == "http/1.1"
    # Trusted and connected: no word about the certificate.
    assert page("eval", expr="document.querySelector('#trust-problem').hidden") is True
    # The login is kept on the phone and gone from the address bar.
    assert page("eval", expr="location.hash") == ""
    assert json.loads(page("eval", expr="localStorage.getItem('pendant.pairing')"))["d"] == DEVICE
    page("wait_text", selector="#availability", text="online")
    page("wait_text", selector="#battery", text="87 %")
    assert page("attr", selector="#mic", name="aria-checked") == "false"
    page("wait_attr", selector="#camera", name="data-known", value="true")
    assert page("attr", selector="#camera", name="aria-checked") == "false"

    ears.publish(
        Intent(
            device_id=DEVICE,
            name="HassTurnOn",
            text="turn on the kitchen lights",
            confidence=0.93,
            slots=[
                Slot(name="name", value="Kitchen Lights", raw_value="kitchen lights", entity="name")
            ],
        )
    )
    ears.publish(NotRecognized(device_id=DEVICE, text="play some music", confidence=0.2))
    ears.publish(
        Intent(
            device_id=DEVICE,
            name="HassStartTimer",
            text="set a timer for five minutes",
            confidence=0.88,
            slots=[Slot(name="minutes", value=5, raw_value="five", entity="minutes")],
        )
    )
    page("wait_text", selector="#feed .event.intent", text="HassTurnOn")
    page("wait_text", selector="#feed .event.intent", text="HassStartTimer")
    page("wait_text", selector="#feed .event.not_recognized", text="play some music")
    feed = page("text", selector="#feed")
    assert "Kitchen" in feed and "turn on the kitchen lights" in feed

    # "Read this": the command reaches the eyes; what they saw comes back as words and a face
    # count, one feed entry for the scene and its ReadText intent, never a picture.
    page("click", selector="#capture")
    assert eyes.command()["name"] == "capture"
    assert ears.command()["name"] == "capture"  # (every component hears every command)
    page("wait_text", selector="#capture-state", text="Asked the pendant")
    scene = Scene(device_id=DEVICE, trigger="capture", face_count=1,
                  text="KEEP REFRIGERATED\nafter opening")  # fmt: skip
    eyes.publish(scene)
    read = "KEEP REFRIGERATED after opening"
    eyes.publish(
        Intent(
            device_id=DEVICE,
            name="ReadText",
            text=read,
            confidence=0.9,
            slots=[Slot(name="text", value=read, raw_value=read, entity="ocr")],
            session_id=scene.session_id,
        )
    )
    page("wait_text", selector="#feed .event.scene", text="1 face hidden")
    # The scene and its intent are two messages: the entry takes the intent's title once the
    # second is in (seen once in CI: read between the two).
    page("wait_text", selector="#feed .event.scene", text="ReadText")
    entry = _feed_text(page, "#feed .event.scene")
    assert entry.startswith("ReadText") and "KEEP REFRIGERATED after opening" in entry
    assert page("eval", expr="document.querySelectorAll('#feed .event.intent').length") == 2
    assert page("eval", expr="document.querySelectorAll('#feed img, #feed canvas').length") == 0
    assert page("text", selector="#capture-state") == ""
    page("screenshot", path=str(shots / "companion-feed.png"), full_page=True)

    # Mute: the tap sends the command; the switch moves only when the pendant reports it.
    page("click", selector="#mic")
    command = ears.command()
    assert (command["name"], command["mic"]) == ("mute", True)
    assert eyes.command()["mic"] is True
    assert page("attr", selector="#mic", name="aria-checked") == "false"
    ears.publish(Mic(device_id=DEVICE, state="muted", muted=True))
    body.publish(Battery(device_id=DEVICE, pct=86))
    page("wait_attr", selector="#mic", name="aria-checked", value="true")
    page("wait_text", selector="#battery", text="86 %")
    page("screenshot", path=str(shots / "companion-muted.png"))
    page("click", selector="#mic")
    assert ears.command()["mic"] is False
    eyes.command()
    ears.publish(Mic(device_id=DEVICE, state="ready", muted=False))
    page("wait_attr", selector="#mic", name="aria-checked", value="false")

    # The camera switch follows the eyes' Camera event, folded into the status; a muted
    # camera cannot be asked to read.
    page("click", selector="#camera")
    command = eyes.command()
    assert (command["name"], command["camera"]) == ("mute", True)
    assert ears.command()["camera"] is True
    eyes.publish(Camera(device_id=DEVICE, muted=True))
    page("wait_attr", selector="#camera", name="aria-checked", value="true")
    page("wait_attr", selector="#capture", name="disabled", value="")
    page("wait_text", selector="#capture-state", text="camera is muted")
    page("click", selector="#camera")
    assert eyes.command()["camera"] is False
    ears.command()
    eyes.publish(Camera(device_id=DEVICE, muted=False))
    page("wait_attr", selector="#camera", name="aria-checked", value="false")
    page("wait_attr", selector="#capture", name="disabled", value=None)

    page("click", selector="#identify")
    assert ears.command()["name"] == "identify"

    # A message for the wearer (issue 15): a `say` command (Home Assistant's answer; here a
    # second client on this phone's account) reaches the bus, where the body buzzes for it,
    # and the app as the link's `say` event: shown in the feed, and spoken. Headless chromium
    # has no voices, so the page's speechSynthesis.speak records what it is given instead.
    page("eval", expr=RECORD_SPEECH)
    answer = "Turned on the kitchen lights, it's 21 °C"
    sender = Client(endpoint(prov, "tls"), phone.user, phone.password)
    try:
        assert not sender.open().is_failure
        sender.publish(f"pendant/{DEVICE}/cmd/say", json.dumps({"text": answer}).encode())
    finally:
        sender.close()
    said = ears.command()
    assert (said["name"], said["text"]) == ("say", answer)
    page("wait_text", selector="#feed .event.say", text=answer)
    assert _feed_text(page, "#feed .event.say").startswith("Message")
    assert page("eval", expr=SPOKEN) == [answer]

    # A question the closed set could not hear (issue 18): after the wearer's press, the ears'
    # transcript goes, as text, to the wearer's own model (a chat-protocol stand-in here), and
    # its answer comes back as the link's `answer`: spoken, and shown with what was sent.
    body.publish(Button(device_id=DEVICE, action="press"))
    time.sleep(0.5)  # the link reads the press before the question (two publishers)
    # As the ears say it: held talk the closed set rejected, not recognised, under the
    # question's session; the answer then takes its place in the feed.
    session = "5e55" * 8

    def not_understood() -> int:
        return page("eval", expr="document.querySelectorAll('#feed .event.not_recognized').length")

    before = not_understood()
    ears.publish(NotRecognized(device_id=DEVICE, confidence=0.1, session_id=session))
    _wait(lambda: not_understood() == before + 1, "the held talk not understood")
    ears.publish(Ask(device_id=DEVICE, text=QUESTION, session_id=session))
    page("wait_text", selector="#feed .event.answer", text=ANSWER)
    assert not_understood() == before
    shown = _feed_text(page, "#feed .event.answer")
    assert shown.startswith("Answer") and f"You asked your assistant: “{QUESTION}”" in shown
    # All that was sent: the scene read just before went with the question, and it says so.
    assert "and sent: The camera read: KEEP REFRIGERATED" in shown
    assert page("eval", expr="window.__spoken")[-1] == ANSWER

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
        page("wait_text", selector="#feed .event.scene", text="KEEP REFRIGERATED")
        page("wait_text", selector="#battery", text="86 %")
        page("wait_text", selector="#link", text="disconnected")
        page("wait_attr", selector="#stale", name="hidden", value=None)
        assert "last reported" in page("text", selector="#stale")
        assert page("attr", selector="#mic", name="aria-checked") == "false"
        assert page("eval", expr="document.querySelector('#capture').disabled") is True
        page("eval", expr="window.scrollTo(0, 0)")
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

    # An enrolment kept without a sentence that was unlike the others: the wearer is told.
    ears.publish(
        Voices(device_id=DEVICE, names=["Sam"], check="conversation", in_force=True, left_out=1)
    )
    page("click", selector="#voices-details summary")
    page("wait_text", selector="#voices", text="Sam")
    page("wait_text", selector="#voices-answer", text="One sentence did not sound like the others")
    # Said once: the retained event, read again on a later visit, does not say it again.
    page("reload")
    page("wait_text", selector="#link", text="connected")
    page("click", selector="#voices-details summary")
    page("wait_text", selector="#voices", text="Sam")
    assert page("text", selector="#voices-answer") == ""

    # Revoked: the account is gone and the reloaded broker refuses the phone.
    assert pairing.revoke(prov.layout.root, phone.user.removeprefix("phone-"), broker_pid=pid)
    _wait(lambda: _refused(prov, phone), "mosquitto reloaded the password file")
    page("reload")
    page("wait_text", selector="#link", text="refused")
    page("screenshot", path=str(shots / "companion-revoked.png"))


# --- the real pendant behind the app -------------------------------------------------------


class QuietThenRecording:
    """The simulated mic: quiet until `play()`, then the recording through `WavSource` (real
    time), then quiet again until closed, so the ears keep listening for the whole test."""

    realtime = True

    def __init__(self, config: AudioConfig, wav: Path | list[Path]) -> None:
        self.wav = WavSource(config, wav if isinstance(wav, list) else [wav])
        self.chunk_samples = RATE_HZ * config.chunk_ms // 1000
        self._play = threading.Event()
        self._running = asyncio.Event()
        self._running.set()
        self._closed = False

    def play(self) -> None:
        self._play.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    async def _quiet(self, until: Callable[[], bool]) -> AsyncIterator[Chunk]:
        silence = np.zeros(self.chunk_samples, dtype=np.int16)
        block_s = BLOCK_CHUNKS * self.chunk_samples / RATE_HZ
        while not self._closed and not until():
            await asyncio.sleep(block_s)
            if not self._running.is_set():
                await self._running.wait()  # muted: a closed mic hears nothing
                continue
            for _ in range(BLOCK_CHUNKS):
                yield Chunk(silence, time.time_ns() // 1_000_000)

    async def chunks(self) -> AsyncIterator[Chunk]:
        async for chunk in self._quiet(self._play.is_set):
            yield chunk
        async for chunk in self.wav.chunks():
            yield chunk
        async for chunk in self._quiet(lambda: False):
            yield chunk

    def pause(self) -> None:
        self._running.clear()
        self.wav.pause()

    def resume(self) -> None:
        self._running.set()
        self.wav.resume()

    def close(self) -> None:
        self._closed = True
        self._running.set()
        self.wav.close()


def _as(config: Config, prov: Provisioned, user: str) -> Config:
    """The demo home as service `user` on the provisioned bus."""
    bus = BusConfig(
        socket=str(prov.socket), username=user, password_file=str(prov.password_file(user))
    )
    return config.model_copy(update={"device_id": DEVICE, "bus": bus})


def test_the_app_shows_what_the_real_pendant_heard_read_and_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audio → VAD → the recogniser → NLU → bus → link → mosquitto → browser; an image → face
    guard → OCR → the same way; the sentence editor's sets judged and run by the real ears."""
    wav = next((f for f in speech_files("main") if f.stem == "set a timer for 5 minutes"), None)
    if wav is None:
        pytest.skip("'set a timer for 5 minutes.wav' is not among the shared recordings")
    config = demo_config()
    try:
        for name in ("silero-vad", "retinaface", "ppocr-v6", "picodet-layout"):
            model_path(config, name)
    except ModelError as exc:
        pytest.skip(f"a model is not in the cache (make models): {exc}")
    image = next(p for p in demo_images() if p.name == "oat-milk.png")
    # Where the ears keep the phone's sentences and their mute, and the eyes theirs.
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    prov = _provision_for_test(tmp_path / "root")
    shots = DOCS or tmp_path
    shots.mkdir(exist_ok=True)

    ears_config = _as(config, prov, "ears")
    ears_config = ears_config.model_copy(
        update={"audio": ears_config.audio.model_copy(update={"source": "wav", "realtime": True})}
    )
    source = QuietThenRecording(ears_config.audio, wav)
    eyes_config = _as(config, prov, "eyes")
    cpu = DetectorConfig(type="cpu")
    eyes_config = eyes_config.model_copy(
        update={"eyes": eyes_config.eyes.model_copy(update={"detector": cpu})}
    )

    def build_ears() -> Any:
        from pendant.ears.service import EarsService

        return EarsService(ears_config, source=source)

    def build_eyes() -> Any:
        from pendant.eyes.service import EyesService

        camera = FileCamera([image], eyes_config.eyes.width, eyes_config.eyes.height)
        return EyesService(eyes_config, camera=camera)

    with running(prov):
        link = link_thread(_link_config(prov, tmp_path))
        threads = [link]
        body = StandIn(prov.socket, "body", prov.password("body"))
        try:
            _wait(lambda: link_ready(link), "the link connected")
            body.publish(Battery(device_id=DEVICE, pct=87))
            # Loading while the browser starts.
            ears = LoopThread("ears", build_ears).start()
            eyes = LoopThread("eyes", build_eyes).start()
            threads += [ears, eyes]
            with web_and_browser(prov, tmp_path) as (web, page):
                # As a wearer pairs: the code `/pair` shows, pressed on the pendant's button.
                _pair_by_code(prov, web, page)

                def up() -> bool:
                    for t in threads:
                        t.check()
                    service = ears.component
                    return eyes.ready.is_set() and getattr(service, "ears", None) is not None

                _wait(up, "the ears and eyes on the bus", SLOW_S)
                _real_pendant(page, source, link, ears, shots)
        finally:
            body.close()
            for t in reversed(threads):
                t.stop()


def _real_pendant(
    page: Browser,
    source: QuietThenRecording,
    link: LoopThread,
    ears: LoopThread,
    shots: Path,
) -> None:
    page("wait_text", selector="#battery", text="87 %")
    page("wait_attr", selector="#mic", name="data-known", value="true")
    assert page("attr", selector="#mic", name="aria-checked") == "false"
    assert page("attr", selector="#camera", name="aria-checked") == "false"

    # A spoken command: the intent in the feed came from the recording.
    source.play()
    slow = {"timeout_ms": int(SLOW_S * 1000)}
    page("wait_text", selector="#feed .event.intent", text="HassStartTimer", **slow)
    entry = _feed_text(page, "#feed .event.intent")
    assert "timer for five minutes" in entry and "minutes 5" in entry, entry

    # The mic switch: the ears close the (simulated) mic, then say so.
    page("click", selector="#mic")
    page("wait_attr", selector="#mic", name="aria-checked", value="true")
    assert source.paused
    page("click", selector="#mic")
    page("wait_attr", selector="#mic", name="aria-checked", value="false")
    assert not source.paused

    # "Read this": the real eyes take one frame from the simulated camera and read it.
    page("click", selector="#capture")
    page("wait_text", selector="#feed .event.scene", text="ReadText", **slow)
    entry = _feed_text(page, "#feed .event.scene").lower()
    assert "organic oat milk" in entry and "best before" in entry, entry
    assert "hidden" not in entry  # no face on a carton
    assert page("eval", expr="document.querySelectorAll('#feed img, #feed canvas').length") == 0

    # The camera switch: the eyes enforce the mute and say so; the link folds it into status.
    page("click", selector="#camera")
    page("wait_attr", selector="#camera", name="aria-checked", value="true")
    assert page("eval", expr="document.querySelector('#capture').disabled") is True
    page("click", selector="#camera")
    page("wait_attr", selector="#camera", name="aria-checked", value="false")

    # My sentences, judged and run by the ears.
    _sentence_editor(page, link, ears, shots)


def _sentence_editor(page: Browser, link: LoopThread, ears: LoopThread, shots: Path) -> None:
    service = ears.component
    forwarded = link.component.commands

    page("click", selector="#sentences-details summary")
    page("wait_text", selector="#sentences-running", text="none of your own")
    page("wait_text", selector="#sentences-count", text="(0)")

    # The obvious mistakes stay on the phone.
    page("click", selector="#add-set")
    page("fill", selector="#sets input.intent", value="partyMode")
    page("fill", selector="#sets textarea.sentences", value="[it's] party time")
    sent = forwarded["forwarded"]
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="Not sent")
    page("wait_text", selector="#sets .problem", text="like PartyMode")
    assert page("attr", selector="#sets input.intent", name="aria-invalid") == "true"
    assert forwarded["forwarded"] == sent

    # A good set: the ears rebuild their grammar and say which sets they now run.
    page("fill", selector="#sets input.intent", value="PartyMode")
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="Accepted", timeout_ms=30_000)
    page("wait_text", selector="#sentences-answer", text="PartyMode")
    page("wait_text", selector="#sentences-running", text="runs: PartyMode")
    match = service.understanding.parser.parse("party time")
    assert match is not None and match.name == "PartyMode"
    assert service.understanding.parser.parse("it's party time").name == "PartyMode"
    assert service.understanding.recognizer.grammar.accepts(["party", "time"])

    # A template hassil cannot read: the ears refuse it, keep PartyMode, and say why.
    page("fill", selector="#sets textarea.sentences", value="party (time")
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="Refused", timeout_ms=30_000)
    answer = page("text", selector="#sentences-answer")
    assert "(PartyMode) 'party (time': Unable to find end of group" in answer, answer
    page("wait_text", selector="#sentences-running", text="runs: PartyMode")
    assert service.understanding.parser.parse("party time").name == "PartyMode"
    page("eval", expr="document.querySelector('#sentences-section').scrollIntoView()")
    page("screenshot", path=str(shots / "companion-sentences.png"))

    # A command the link cannot take (a 45-letter word) never reaches the ears: its `error`
    # event is the answer, in the editor and in the feed.
    long_word = "pneumonoultramicroscopicsilicovolcanoconiosis"
    page("fill", selector="#sets textarea.sentences", value=f"party {long_word}")
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="a word over 40 characters")
    page("wait_text", selector="#feed .event.error", text="a word over 40 characters")
    assert service.understanding.parser.parse("party time").name == "PartyMode"

    page("click", selector="#revert-sentences")
    assert page("eval", expr="document.querySelector('#sets textarea').value") == (
        "[it's] party time"
    )

    # Offline: the editor shows the last sets the pendant reported and keeps an edit, but
    # cannot send; back online the edit is still there to send.
    page("set_offline", offline=True)
    try:
        page("reload")
        page("wait_text", selector="#link", text="disconnected")
        page("wait_text", selector="#sentences-running", text="PartyMode")
        page("wait_text", selector="#sentences-running", text="last known")
        assert page("eval", expr="document.querySelector('#send-sentences').disabled") is True
        page("fill", selector="#sets textarea.sentences", value="[it's] party time\nlet's party")
        # Forget what the pendant last said, to see it say it again (retained).
        forget = "const s = JSON.parse(localStorage.getItem('pendant.state')); delete s.sentences;"
        page("eval", expr=forget + " localStorage.setItem('pendant.state', JSON.stringify(s))")
    finally:
        page("set_offline", offline=False)
    page("reload")
    page("wait_text", selector="#link", text="connected")
    # The retained `sentences` came with the connection; the edit was kept on the phone.
    page("wait_text", selector="#sentences-running", text="runs: PartyMode.")
    assert "last known" not in page("text", selector="#sentences-running")
    assert "let's party" in page("eval", expr="document.querySelector('#sets textarea').value")
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="Accepted", timeout_ms=30_000)
    assert service.understanding.parser.parse("let's party").name == "PartyMode"

    # Taken, but a sentence Home Assistant's own sentences win is marked where it is written.
    shadowed = "[it's] party time\nlet's party\nturn on the kitchen lights"
    page("fill", selector="#sets textarea.sentences", value=shadowed)
    page("click", selector="#send-sentences")
    page("wait_text", selector="#sentences-answer", text="Accepted", timeout_ms=30_000)
    page("wait_text", selector="#sentences-answer", text="1 sentence may not work as you mean")
    page("wait_text", selector="#sets li.set .warnings li", text="heard as HassTurnOn")
    marks = "[...document.querySelectorAll('#sets li.set .warnings li')].map((n) => n.innerText)"
    assert page("eval", expr=marks) == [
        "turn on the kitchen lights: 'turn on the kitchen lights' is heard as HassTurnOn"
    ]
    assert service.understanding.parser.parse("let's party").name == "PartyMode"
    page("eval", expr="document.querySelector('#sentences-section').scrollIntoView()")
    page("screenshot", path=str(shots / "companion-sentence-warning.png"))
    # The mark goes with the line it is about.
    page("fill", selector="#sets textarea.sentences", value="[it's] party time\nlet's party")
    assert page("eval", expr=marks) == []


def test_the_app_enrols_a_voice_through_the_real_ears_and_forgets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """My voice (issue 19): a name, Start, five sentences read (speech-en/main's speaker, the
    simulated mic in real time), the count as the real ears take them, the voice listed (its
    print 0600 in the ears' state, never in the page), then forgotten from the page."""
    pytest.importorskip("pendant.ears.speaker.encoder", reason="no voice encoder module")
    said = [
        "set a timer for 3 hours and 10 minutes",
        "set Bed Light brightness to 50 percent",
        "what is the Outdoor Humidity",
        "is the Front Door locked",
        "activate Mood Lighting",
    ]
    wavs = [f for s in said for f in speech_files("main") if f.stem == s]
    config = demo_config()
    try:
        for name in ("silero-vad", "ge2e-voice"):
            model_path(config, name)
    except ModelError as exc:
        pytest.skip(f"a model is not in the cache (make models): {exc}")
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    state.mkdir(mode=0o700)
    prov = _provision_for_test(tmp_path / "root")
    shots = DOCS or tmp_path
    shots.mkdir(exist_ok=True)
    ears_config = _as(config, prov, "ears")
    ears_config = ears_config.model_copy(
        update={"audio": ears_config.audio.model_copy(update={"source": "wav", "realtime": True})}
    )
    source = QuietThenRecording(ears_config.audio, wavs)

    def build_ears() -> Any:
        from pendant.ears.service import EarsService

        return EarsService(ears_config, source=source)

    with running(prov):
        link = link_thread(_link_config(prov, tmp_path))
        threads = [link]
        try:
            _wait(lambda: link_ready(link), "the link connected")
            ears = LoopThread("ears", build_ears).start()
            threads.append(ears)
            with web_and_browser(prov, tmp_path) as (web, page):
                _pair_by_code(prov, web, page)

                def up() -> bool:
                    for t in threads:
                        t.check()
                    return getattr(ears.component, "ears", None) is not None

                _wait(up, "the ears on the bus", SLOW_S)
                slow = {"timeout_ms": int(SLOW_S * 1000)}
                page("click", selector="#voices-details summary")
                page("wait_text", selector="#voices-state", text="Anyone's commands are heard")
                page("fill", selector="#voice-name", value="Sam")
                page("click", selector="#enrol-start")
                page("wait_text", selector="#enrol-progress", text="Sam: 0 of 5 heard")
                assert "lazy dog" in page("text", selector="#enrol-sentences")
                assert (
                    page(
                        "eval",
                        expr="getComputedStyle(document.querySelector('#enrol-form')).display",
                    )
                    == "none"
                )
                source.play()
                page("wait_text", selector="#enrol-progress", text="Sam: 2 of 5 heard", **slow)
                page("eval", expr="document.querySelector('#voices-section').scrollIntoView()")
                page("screenshot", path=str(shots / "companion-voice-enrol.png"))
                page("wait_text", selector="#voices", text="Sam", **slow)
                page("wait_text", selector="#voices-state", text="Only these voices are obeyed")
                kept = state / "voices.json"
                assert oct(kept.stat().st_mode & 0o777) == "0o600"
                stored = json.loads(kept.read_text())["voices"][0]["embedding"]
                html = page("eval", expr="document.documentElement.outerHTML")
                saved = page("eval", expr="JSON.stringify(localStorage)")
                for x in stored[:16]:
                    assert json.dumps(x) not in html and json.dumps(x) not in saved
                # Forgetting the only voice lets everyone in: the pendant wants a tap.
                page("click", selector="#voices .forget-voice")
                page("wait_text", selector="#voices-answer", text="Tap the pendant to confirm")
                body = StandIn(prov.socket, "body", prov.password("body"))
                try:
                    body.publish(Button(device_id=DEVICE, action="tap"))
                finally:
                    body.close()
                page("wait_text", selector="#voices-count", text="(0)")
                page("wait_text", selector="#voices-state", text="Anyone's commands are heard")
                assert json.loads(kept.read_text())["voices"] == []
        finally:
            for t in reversed(threads):
                t.stop()
