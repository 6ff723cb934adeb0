"""The pairing window, end to end on real parts: a very long hold on the body (gpiozero's mock
pins) opens it, the pairing service makes a one-time phone account on a real mosquitto running
the rendered config and ACL, a phone asks at `/pair` of the real web server (`python -m
pendant.web.server`, a subprocess), the wearer's press accepts it, the web server hands the link
to that phone once, and the phone logs in with it; an offer nobody takes expires and its
account is revoked; when several devices ask, the wearer's presses accept the one whose code
they count (the code only that phone's page shows), and a count that is no device's code
refuses them all.

The body and the pairing service run on one asyncio loop in a thread (as `pendant run` would
run them), so the test itself stays synchronous: paho clients and http.client, every wait with
a timeout, nothing asserted about how fast anything happened. "Nothing arrives" is proved with
fences, as in test_mosquitto_config.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.client
import json
import queue
import re
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import pytest
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pendant.app.local_broker import free_port
from pendant.body.service import BodyService
from pendant.core.config import BodyConfig, BusConfig, Config, PairingConfig
from pendant.core.events import PairingWindow
from pendant.core.supervise import Readiness
from pendant.pairing.service import PairingService
from pendant.setup.provision import PHONE_PREFIX, Provisioned
from pendant.web import pair_desk
from pendant.web import server as webserver
from tests.support.mosquitto_support import (
    DEVICE,
    TIMEOUT_S,
    Client,
    Msg,
    _accepted_eventually,
    _provision_for_test,
    endpoint,
    needs_mosquitto,
    running,
)
from tests.system.test_webserver import WEB, WebServer

pytestmark = needs_mosquitto

HOLD = {"double_press_s": 0.2, "long_hold_s": 0.4, "pairing_hold_s": 0.8}
MARGIN_S = 0.3
OFFER = "pendant-bus/pairing_offer"
STATUS = "pendant-bus/pairing_status"
WINDOW = "pendant-bus/pairing_window"
# After a bus outage the web server's pairing desk may be in its longest reconnect wait when the
# broker returns: "taken" can only be heard after that wait, so the deadline is counted from it.
BACK_S = max(pair_desk.BUS_RETRY_S) + TIMEOUT_S


# --- the body and the pairing service, on one loop in a thread -----------------------------


class Loop:
    """An asyncio loop in a thread: coroutines submitted from the test, failures reported."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks: list[asyncio.Task[Any]] = []

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT_S)

    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        async def create() -> asyncio.Task[Any]:
            return asyncio.create_task(coro)

        task: asyncio.Task[Any] = self.call(create())
        self.tasks.append(task)
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        """Cancel a task and wait until it has ended: by the cancellation, not by an error."""

        async def cancel() -> object:
            task.cancel()
            return (await asyncio.gather(task, return_exceptions=True))[0]

        result = self.call(cancel())
        assert result is None or isinstance(result, asyncio.CancelledError), result

    def close(self) -> None:
        try:
            for task in self.tasks:
                self.stop(task)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(TIMEOUT_S)
            self.loop.close()


def config(prov: Provisioned, user: str, window_s: float = 30.0) -> Config:
    return Config(
        device_id=DEVICE,
        bus=BusConfig(
            socket=str(prov.socket), username=user, password_file=str(prov.password_file(user))
        ),
        body=BodyConfig(pin_factory="mock", battery="simulated", **HOLD),
        pairing=PairingConfig(window_s=window_s),
    )


def start_pairing(
    loop: Loop, prov: Provisioned, window_s: float
) -> tuple[PairingService, asyncio.Task[Any]]:
    async def make() -> PairingService:
        return PairingService(config(prov, "pairing", window_s), root=prov.layout.root)

    service = loop.call(make())
    ready = Readiness()
    task = loop.start(service.run(ready))
    loop.call(asyncio.wait_for(ready.wait(), TIMEOUT_S))
    return service, task


def start_body(loop: Loop, prov: Provisioned, **body: object) -> BodyService:
    """The body on gpiozero's mock pins; `body`: BodyConfig fields to change."""

    async def make() -> BodyService:
        base = config(prov, "body")
        changed = base.model_copy(update={"body": base.body.model_copy(update=body)})
        return BodyService(changed, factory=MockFactory(pin_class=MockPWMPin))

    body = loop.call(make())
    # No link runs here: start as a pendant that is up, whose idle LED is dark (the LED's
    # link states are tests/integration/test_body.py's).
    body.indicators.link = "connected"
    ready = Readiness()
    loop.start(body.run(ready))
    loop.call(asyncio.wait_for(ready.wait(), TIMEOUT_S))
    return body


def hold_button(body: BodyService, seconds: float) -> None:
    """Held from this thread, as lgpio's thread would on the Pi."""
    pin = body.factory.pin(body.pins["button"].gpio)
    pin.drive_low()
    time.sleep(seconds)
    pin.drive_high()


def eventually(condition: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)


# --- bus watchers ----------------------------------------------------------------------------


class Watcher:
    """A paho client that keeps everything it received, for later checks."""

    def __init__(self, prov: Provisioned, user: str, via: str = "unix") -> None:
        self.client = Client(endpoint(prov, via), user, prov.password(user))
        rc = self.client.open()
        assert not rc.is_failure, f"{user} refused: {rc}"
        self.got: list[Msg] = []

    def next(self, topic: str, match: Callable[[bytes], bool] = lambda _: True) -> bytes:
        """The payload of the next message on `topic` that matches."""
        deadline = time.monotonic() + TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.client.messages.get(timeout=left)
            except queue.Empty:
                break
            self.got.append(msg)
            if msg[0] == topic and match(msg[1]):
                return msg[1]
        pytest.fail(f"nothing on {topic} within {TIMEOUT_S} s; got {self.got}")

    def fence(self, publisher: Client, topic: str) -> None:
        self.got += self.client.fence(publisher, topic)

    def topics(self) -> set[str]:
        return {m[0] for m in self.got}

    def close(self) -> None:
        self.client.close()


def event_with(**fields: object) -> Callable[[bytes], bool]:
    def match(payload: bytes) -> bool:
        if not payload:
            return False
        data = json.loads(payload)
        return all(data.get(k) == v for k, v in fields.items())

    return match


# --- the web server ---------------------------------------------------------------------------


def get_pair(
    web: WebServer, prov: Provisioned, token: str | None = None, source: str = "127.0.0.1"
) -> tuple[list[tuple[str, str]], str]:
    """GET /pair (with a waiting page's token) from `source`, as a phone there would: after a
    429 (the rate limit), again once Retry-After has passed."""
    ctx = ssl.create_default_context(cafile=str(prov.ca_cert))
    path = "/pair" if token is None else f"/pair?r={token}"
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        conn = http.client.HTTPSConnection(
            "127.0.0.1", web.port, context=ctx, timeout=TIMEOUT_S, source_address=(source, 0)
        )
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read().decode()
        finally:
            conn.close()
        if response.status == 429 and time.monotonic() < deadline:
            time.sleep(float(response.getheader("Retry-After", "1")))
            continue
        assert response.status == 200
        return response.getheaders(), body


def waiting_token(body: str) -> str | None:
    """The token of a page that waits for the wearer's press (it comes back with it)."""
    m = re.search(r'<meta http-equiv="refresh" content="\d+; url=/pair\?r=([0-9a-f]{32})">', body)
    return m.group(1) if m else None


def page_code(body: str) -> int | None:
    """The code a waiting page shows: how many presses accept this phone."""
    m = re.search(r'<strong id="code">([0-9]+)</strong>', body)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Asking:
    """A phone waiting for the wearer: the token its page comes back with, and its code."""

    token: str
    code: int


def until_waiting(web: WebServer, prov: Provisioned, source: str = "127.0.0.1") -> Asking:
    """GET /pair until the phone is told to wait for the presses: the server learns of the
    offer over the bus, in its own time."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        _, body = get_pair(web, prov, source=source)
        assert pairing_link(body) is None, "handed out before the wearer accepted"
        token, code = waiting_token(body), page_code(body)
        if token is not None:
            assert code is not None and 1 <= code <= pair_desk.PAIR_CODES, body
            return Asking(token, code)
        time.sleep(0.3)
    pytest.fail(f"/pair did not ask for the wearer's presses within {TIMEOUT_S} s")


# A burst of presses ends this long after the last one (gestures.Timings.count_gap_s).
COUNT_GAP_S = 1.5


def press(body: BodyService, times: int) -> None:
    """`times` short presses in a row, as the wearer counts a code; then the pause that ends
    the burst (and a margin), so that the count is on the bus."""
    for _ in range(times):
        hold_button(body, 0.05)
        time.sleep(0.1)
    time.sleep(COUNT_GAP_S + MARGIN_S)


def pairing_link(body: str) -> str | None:
    m = re.search(r'<meta http-equiv="refresh" content="0; url=([^"]+)">', body)
    return html.unescape(m.group(1)) if m else None


def until_handed_out(
    web: WebServer, prov: Provisioned, token: str, source: str = "127.0.0.1"
) -> tuple[list[tuple[str, str]], str]:
    """GET /pair?r=<token> from `source` until it hands out the link: the server learns of
    the wearer's "yes" over the bus, in its own time."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        headers, body = get_pair(web, prov, token, source)
        if pairing_link(body) is not None:
            return headers, body
        time.sleep(0.3)
    pytest.fail(f"/pair handed out no link within {TIMEOUT_S} s")


# --- the test ---------------------------------------------------------------------------------


@pytest.fixture
def pendant() -> Iterator[tuple[Provisioned, Path]]:
    # A short root: the bus socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="pw-") as d:
        prov = _provision_for_test(Path(d) / "root", add_phones=("alice",))
        with running(prov):
            yield prov, Path(d)


def test_a_long_press_pairs_one_phone_once_and_an_unused_offer_is_revoked(
    pendant: tuple[Provisioned, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Proves the pairing window end to end: the very long hold reaches the bus, the pairing
    service makes a one-time account and a retained offer only it can write and only the web
    server can read, the LED
    shows the window, `/pair` hands the link out once (login only in the fragment, in no header
    or log), the phone logs in with it and reads the pendant's topics; a second `/pair` is told
    how to open pairing; an offer nobody takes expires, its account is revoked and refused."""
    prov, scratch = pendant
    caplog.set_level("INFO")
    loop = Loop()
    watchers: list[Watcher] = []
    web = WebServer(
        WEB,
        prov.layout.conf_dir / "server.crt",
        prov.layout.conf_dir / "server.key",
        "--bus-socket", str(prov.socket),
        "--bus-password-file", str(prov.password_file("web")),
        log_dir=scratch,
    )  # fmt: skip
    try:
        web.start()
        pairing, pairing_task = start_pairing(loop, prov, window_s=30.0)
        body = start_body(loop, prov)

        def watch(user: str, *topics: str, via: str = "unix") -> Watcher:
            w = Watcher(prov, user, via)
            w.client.subscribe(*topics)
            watchers.append(w)
            return w

        web_user = watch("web", OFFER)
        # Everyone else who might want the offer: all they may read of the bus, and the offer.
        link = watch("link", "pendant-bus/#", OFFER)
        ears = watch("ears", "pendant-bus/#", OFFER)
        alice = watch("phone-alice", f"pendant/{DEVICE}/#", "pendant-bus/#", OFFER, via="tls")

        # Nobody but the pairing service writes an offer: a forged one never reaches the web.
        forgers = [link, ears, alice, watch("body", "pendant-bus/pairing_status")]
        for forger in forgers:
            forger.client.publish(OFFER, b'{"type": "pairing_offer", "forged": true}')
        web_user.fence(watch("pairing", STATUS).client, OFFER)
        assert web_user.got == []

        # The very long hold: the body asks, the pairing service opens.
        hold_button(body, HOLD["pairing_hold_s"] + MARGIN_S)
        link.next(WINDOW, event_with(type="pairing_window", open=True))
        offer = json.loads(web_user.next(OFFER, event_with(type="pairing_offer")))
        user = offer["user"]
        assert re.fullmatch(r"phone-[0-9a-f]{6}", user)
        assert pairing.opened == [user.removeprefix("phone-")]
        password = prov.password(user)
        link.next(STATUS, event_with(open=True, user=user))
        eventually(lambda: body.led_pattern == "pairing", "the LED shows the pairing window")

        # Nobody but the web server reads the offer: not as it was published...
        link.fence(ears.client, "pendant-bus/intent")
        ears.fence(link.client, "pendant-bus/cmd/fence")
        alice.fence(link.client, f"pendant/{DEVICE}/status")
        # ...nor retained, to a newcomer.
        late = [watch(u, "pendant-bus/#", OFFER) for u in ("link", "ears")]
        late.append(watch("phone-alice", f"pendant/{DEVICE}/#", OFFER, via="tls"))
        late[0].fence(ears.client, "pendant-bus/intent")
        late[1].fence(link.client, "pendant-bus/cmd/fence")
        late[2].fence(link.client, f"pendant/{DEVICE}/status")
        for w in (link, ears, alice, *late):
            assert OFFER not in w.topics(), w.got

        # The phone opens /pair: it is shown its code, and given nothing yet.
        asking = until_waiting(web, prov)
        token = asking.token
        link.next(STATUS, event_with(open=True, user=user, asked=True))
        eventually(lambda: body.led_pattern == "pairing_asked", "the LED says a phone asks")
        # A buzz for the window, and one more: "a phone asks".
        assert body.haptic.history.count("double") == 2
        _, page = get_pair(web, prov, token)
        assert pairing_link(page) is None and waiting_token(page) == token
        assert page_code(page) == asking.code
        # Another tab of the same phone (one address) is the same request, not a second one.
        assert until_waiting(web, prov) == asking
        # The code is on that phone's page alone: not in what the LED follows.
        assert all(b'"code"' not in m[1] for m in link.got if m[0] == STATUS)

        # The wearer presses the code: the offer again, naming that phone; then the link, with
        # the login only in the fragment, to that phone.
        press(body, asking.code)
        accepted = json.loads(web_user.next(OFFER, lambda p: b'"requester"' in p))
        assert accepted["user"] == user
        headers, page = until_handed_out(web, prov, token)
        link_url = pairing_link(page)
        assert link_url is not None and link_url.startswith("/#")
        fields = {k: v[0] for k, v in parse_qs(link_url[2:], strict_parsing=True).items()}
        assert fields == {
            "u": user,
            "p": password,
            "d": DEVICE,
            "w": str(prov.settings.ws_port),
        }
        assert not any(password in f"{k}: {v}" for k, v in headers), headers
        assert dict(headers)["Cache-Control"] == "no-store"

        # Single use: taken, the offer is cleared and the window closes, the account stays.
        assert web_user.next(OFFER, lambda p: p == b"") == b""
        link.next(STATUS, event_with(open=False))
        assert pairing.taken == [user.removeprefix("phone-")] and pairing.revoked == []
        assert prov.password_file(user).exists()
        eventually(lambda: body.led_pattern == "off", "the LED leaves the pairing pattern")
        _, page = get_pair(web, prov)
        assert pairing_link(page) is None
        assert "Hold the pendant's button for 8 seconds" in page

        # The phone logs in with what the link carried and reads the pendant's public topics.
        tls = endpoint(prov, "tls")
        assert _accepted_eventually(tls, user, password, True)
        phone = Client(tls, user, password)
        assert not phone.open().is_failure
        try:
            phone.subscribe(f"pendant/{DEVICE}/#")
            link.client.publish(f"pendant/{DEVICE}/status", b'{"state": "ready"}')
            assert phone.until(f"pendant/{DEVICE}/status", b'{"state": "ready"}') == []
        finally:
            phone.close()

        # An offer nobody takes: a short window, opened by the button again.
        loop.stop(pairing_task)
        pairing, pairing_task = start_pairing(loop, prov, window_s=1.0)
        hold_button(body, HOLD["pairing_hold_s"] + MARGIN_S)
        unused = json.loads(web_user.next(OFFER, event_with(type="pairing_offer")))
        other = unused["user"]
        assert other != user
        other_password = parse_qs(unused["fragment"])["p"][0]
        assert other_password == prov.password(other)
        link.next(STATUS, event_with(open=True, user=other))
        assert web_user.next(OFFER, lambda p: p == b"") == b""
        link.next(STATUS, event_with(open=False))
        assert pairing.revoked == [other.removeprefix("phone-")] and pairing.taken == []
        assert not prov.password_file(other).exists()
        assert _accepted_eventually(tls, other, other_password, False)
        # The paired phone is untouched, and /pair is closed again.
        assert _accepted_eventually(tls, user, password, True)
        _, page = get_pair(web, prov)
        assert pairing_link(page) is None

        # No password in any log line: the web server's, the services', the broker's.
        web.stop()
        logs = [web.log.read_text(), caplog.text, (prov.layout.root / "mosquitto.log").read_text()]
        for secret in (password, other_password):
            assert not any(secret in text for text in logs)
    finally:
        for w in watchers:
            w.close()
        loop.close()
        web.stop()


@contextlib.contextmanager
def window_with_web(
    pendant: tuple[Provisioned, Path],
) -> Iterator[tuple[WebServer, PairingService, BodyService, Watcher]]:
    """The web server on the bus, the pairing service, the body, and a watcher of the window's
    state and errors (as the link); the window opened by the very long hold."""
    prov, scratch = pendant
    loop = Loop()
    watchers: list[Watcher] = []
    web = WebServer(
        WEB,
        prov.layout.conf_dir / "server.crt",
        prov.layout.conf_dir / "server.key",
        "--bus-socket", str(prov.socket),
        "--bus-password-file", str(prov.password_file("web")),
        log_dir=scratch,
    )  # fmt: skip
    try:
        web.start()
        pairing, _ = start_pairing(loop, prov, window_s=60.0)
        body = start_body(loop, prov)
        link = Watcher(prov, "link")
        watchers.append(link)
        link.client.subscribe(STATUS, "pendant-bus/error", "pendant-bus/pairing_confirm")
        hold_button(body, HOLD["pairing_hold_s"] + MARGIN_S)
        link.next(STATUS, event_with(open=True))
        yield web, pairing, body, link
    finally:
        for w in watchers:
            w.close()
        loop.close()
        web.stop()


def test_the_wearer_accepts_their_phone_by_its_code_though_an_attacker_asked_first(
    pendant: tuple[Provisioned, Path],
) -> None:
    """Issue 14 (HIGH): a device on the LAN polling `/pair` asks the moment the window opens,
    before the wearer's phone; a single press accepted "the phone that asked", so the attacker
    got a permanent account. Now each asker's page shows its own code, and the wearer presses
    the code on their own phone's screen: their phone gets the login, the attacker nothing."""
    prov, _ = pendant
    with window_with_web(pendant) as (web, pairing, body, link):
        name = str(pairing.open_name)
        attacker = until_waiting(web, prov, source="127.0.0.2")
        eventually(lambda: len(pairing.requesters) == 1, "the attacker's request is heard")
        phone = until_waiting(web, prov, source="127.0.0.3")
        assert phone.code != attacker.code
        eventually(lambda: len(pairing.requesters) == 2, "both requests are heard")
        # Asking first wins nothing, and asking again changes nothing.
        _, page = get_pair(web, prov, attacker.token, source="127.0.0.2")
        assert pairing_link(page) is None and page_code(page) == attacker.code

        press(body, phone.code)
        confirm = json.loads(link.next("pendant-bus/pairing_confirm"))
        assert confirm["presses"] == phone.code
        link.next(STATUS, event_with(open=True, accepted=True))
        _, page = until_handed_out(web, prov, phone.token, "127.0.0.3")
        link_url = pairing_link(page)
        assert link_url is not None
        fields = {k: v[0] for k, v in parse_qs(link_url[2:], strict_parsing=True).items()}
        assert fields["u"] == PHONE_PREFIX + name

        link.next(STATUS, event_with(open=False))
        assert pairing.taken == [name] and pairing.revoked == [] and pairing.refused == []
        _, page = get_pair(web, prov, attacker.token, source="127.0.0.2")
        assert pairing_link(page) is None and waiting_token(page) is None
        assert "Pairing ended without this phone" in page
        tls = endpoint(prov, "tls")
        assert _accepted_eventually(tls, fields["u"], fields["p"], True)


def test_a_count_that_matches_no_phone_refuses_them_all(
    pendant: tuple[Provisioned, Path],
) -> None:
    """Issue 14: a count that is no asker's code (the wearer miscounted, or was told a number
    by someone) refuses every device, revokes the account and ends the window, so that nobody
    gets in by the wearer trying counts; the LED flashes an error, and a press afterwards
    accepts no one."""
    prov, _ = pendant
    with window_with_web(pendant) as (web, pairing, body, link):
        name = str(pairing.open_name)
        attacker = until_waiting(web, prov, source="127.0.0.2")
        phone = until_waiting(web, prov, source="127.0.0.3")
        eventually(lambda: len(pairing.requesters) == 2, "both requests are heard")
        wrong = min({1, 2, 3, 4} - {attacker.code, phone.code})

        press(body, wrong)
        link.next(STATUS, event_with(open=False))
        error = json.loads(link.next("pendant-bus/error"))
        assert "matched no phone's code" in error["reason"]
        assert pairing.refused == [name] and pairing.revoked == [name] and pairing.taken == []
        assert not prov.password_file(PHONE_PREFIX + name).exists()
        eventually(lambda: body.indicators.error_until_s > 0, "the LED flashes the error")
        eventually(lambda: body.led_pattern == "off", "the window's pattern ends")

        # Presses now accept no one, and neither device is handed anything.
        press(body, phone.code)
        for asking, source in ((attacker, "127.0.0.2"), (phone, "127.0.0.3")):
            _, page = get_pair(web, prov, asking.token, source=source)
            assert pairing_link(page) is None and waiting_token(page) is None
            assert "Pairing ended without this phone" in page
        assert pairing.taken == []


def test_pair_is_refused_past_the_rate_limit(pendant: tuple[Provisioned, Path]) -> None:
    """Issue 14, item 1: `/pair` had no rate limit. One address gets `PAIR_BURST` answers at
    once, then 429 (with Retry-After); another address is not held back by it."""
    prov, scratch = pendant
    with WebServer(
        WEB, prov.layout.conf_dir / "server.crt", prov.layout.conf_dir / "server.key",
        log_dir=scratch,
    ) as web:  # fmt: skip
        ctx = ssl.create_default_context(cafile=str(prov.ca_cert))

        def status(source: str) -> int:
            conn = http.client.HTTPSConnection(
                "127.0.0.1", web.port, context=ctx, timeout=TIMEOUT_S, source_address=(source, 0)
            )
            try:
                conn.request("GET", "/pair")
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        burst = 5  # pair_desk.PAIR_BURST
        statuses = [status("127.0.0.4") for _ in range(burst + 3)]
        assert statuses[:burst] == [200] * burst
        assert 429 in statuses[burst:]
        assert status("127.0.0.5") == 200
        assert burst == pair_desk.PAIR_BURST


# --- the bus cut between taking the offer and reporting it -----------------------------------


@dataclass
class Cut:
    prov: Provisioned
    pairing: PairingService
    server: Any  # what get_pair needs of a web server: its port
    user: str


@pytest.fixture
def taken_while_cut() -> Iterator[Cut]:
    """A window opened, its offer taken at `/pair`, and the broker stopped right after the
    taking, before the web server could report it; then the same broker started again
    (persistence on, so the offer is retained again).

    The web server runs in-process (its pairing desk on the test's loop), so that the cut
    lands exactly between taking and reporting: the broker is stopped inside `take`, while
    the desk's loop is blocked and cannot notice anything.
    """
    with tempfile.TemporaryDirectory(prefix="pw-") as d, contextlib.ExitStack() as stack:
        prov = _provision_for_test(Path(d) / "root")
        broker = stack.enter_context(running(prov))
        loop = Loop()
        stack.callback(loop.close)
        pairing, _ = start_pairing(loop, prov, window_s=60.0)

        async def make_desk() -> pair_desk.PairingDesk:
            return pair_desk.PairingDesk(str(prov.socket), prov.password("web"))

        desk = loop.call(make_desk())
        real_take = desk.take
        taken: list[pair_desk.Offer | None] = []

        def take_then_cut() -> pair_desk.Offer | None:
            offer = real_take()
            taken.append(offer)
            if broker.poll() is None:
                broker.terminate()
                broker.wait(TIMEOUT_S)
            return offer

        desk.take = take_then_cut  # type: ignore[method-assign]
        port = free_port()
        started = threading.Event()

        async def web() -> None:
            server = webserver.WebServer(
                WEB,
                prov.layout.conf_dir / "server.crt",
                prov.layout.conf_dir / "server.key",
                port,
                "127.0.0.1",
                pairing=desk,
            )
            await server.run(lambda _: started.set())

        loop.start(web())
        assert started.wait(TIMEOUT_S)
        server = SimpleNamespace(port=port)

        # The body asks (as a paho client: the body service ends with its bus, by design).
        body = Watcher(prov, "body")
        stack.callback(body.close)
        body.client.publish(WINDOW, PairingWindow(device_id=DEVICE, open=True).to_json())
        eventually(lambda: pairing.open_name is not None, "the window opens")
        user = PHONE_PREFIX + str(pairing.open_name)
        eventually(lambda: desk.offer is not None, "the web server has the offer")

        # The phone asks, the wearer accepts it (as the body would: a paho client again).
        asking = until_waiting(server, prov)  # type: ignore[arg-type]
        token = asking.token
        eventually(lambda: bool(pairing.requesters), "the pairing window hears the request")
        confirm = {
            "type": "pairing_confirm",
            "version": 1,
            "device_id": DEVICE,
            "presses": asking.code,
        }
        body.client.publish("pendant-bus/pairing_confirm", json.dumps(confirm))
        eventually(lambda: desk.offer is not None and desk.offer.requester, "the phone accepted")

        # Taken, and the bus cut before the report.
        _, page = get_pair(server, prov, token)  # type: ignore[arg-type]
        assert pairing_link(page) is not None
        assert [o.user for o in taken if o is not None] == [user]
        assert broker.poll() is not None
        assert pairing.taken == []

        stack.enter_context(running(prov))
        yield Cut(prov, pairing, server, user)


def test_an_offer_taken_while_the_bus_is_cut_is_reported_once_it_is_back(
    taken_while_cut: Cut,
) -> None:
    """Proves the "taken" report outlives a bus outage: it is sent again once the bus is back,
    the pairing window hears it, closes, and keeps the new phone's account."""
    cut = taken_while_cut
    name = cut.user.removeprefix(PHONE_PREFIX)
    eventually(lambda: cut.pairing.taken == [name], "the pairing window hears 'taken'", BACK_S)
    eventually(lambda: cut.pairing.open_name is None, "the window closes")
    assert cut.pairing.revoked == []
    assert cut.prov.password_file(cut.user).exists()
    tls = endpoint(cut.prov, "tls")
    assert _accepted_eventually(tls, cut.user, cut.prov.password(cut.user), True)


def test_an_offer_taken_while_the_bus_is_cut_is_never_handed_out_again(
    taken_while_cut: Cut,
) -> None:
    """Proves "single use" across a bus outage: the offer, replayed by the restarted broker
    and offered again by the pairing service, is never handed out a second time, neither
    before the pairing window has heard "taken" nor after."""
    cut = taken_while_cut
    name = cut.user.removeprefix(PHONE_PREFIX)

    def handed_out_nothing_until_paired() -> bool:
        _, page = get_pair(cut.server, cut.prov)
        assert pairing_link(page) is None, "the offer was handed out a second time"
        return cut.pairing.taken == [name]

    eventually(handed_out_nothing_until_paired, "the pairing window hears 'taken'", BACK_S)
    eventually(lambda: cut.pairing.open_name is None, "the window closes")
    _, page = get_pair(cut.server, cut.prov)
    assert pairing_link(page) is None
