"""One queue towards the home broker, through the shipped path (issue 14 item 4).

The review found that in the shipped topology the outbox's promises did not hold: the link
published to the device's mosquitto, which acknowledged at once, and a bridge then queued the
intents with no expiry (late by as long as the home broker was away) and in RAM (a `kill -9`
of mosquitto, like a power cut, lost them all).

Here everything is as on the device: `pendant.setup.provision` renders mosquitto's config and the
home broker's settings exactly as the image's first boot does (`--bridge-host` and friends),
real mosquitto runs that config, the link runs as `pendant service link` with the shipped
`device/pendant/data/device-pendant.toml` (paths moved into a scratch root) and its passwords
as systemd credentials, and the home broker is a real mosquitto speaking TLS with a CA of the
test's.
The ears are a client of the device's socket that publishes intents as the ears would; Home
Assistant is a persistent subscriber on the home broker.

Each test stops the home broker first (an outage), has the ears publish, and waits until the
link has taken what they published (its outbox on disk holds it) before doing its worst.
Nothing asserts on timing but the expiry, which is the point.

The power cuts mount `tests.support.powercut` (a disk whose page cache a cut loses) over mosquitto's
state directory and the link's (`var/`: the outbox and its id key), so what comes back after
them is what the two programs made durable, not what a kill left in the kernel's cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from pendant.app.local_broker import LocalBroker, accepts, free_port
from pendant.core import bus
from pendant.core.config import BusConfig, drop_in_dir, load_config
from pendant.core.events import Intent
from pendant.link.gate import id_key, reissue
from pendant.link.service import ID_KEY_FILE
from pendant.setup.provision import Provisioned, provision
from tests.support.powercut import VolatileMount, unavailable
from tests.support.tasks import first_seen, running, until, within
from tests.support.tls_support import Ca, make_ca, make_server, needs_openssl

pytestmark = [
    needs_openssl,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
        reason="mosquitto is not installed (apt install mosquitto)",
    ),
]

REPO = Path(__file__).resolve().parents[2]
DEVICE = "pendant-q"
BASE = f"pendant/{DEVICE}"
# Short, so a test can outlast it; long enough for a reconnect (the link backs off up to 5 s).
EXPIRY_S = 8.0
WAIT_S = 30.0
TEST_S = 150.0
ME = pwd.getpwuid(os.getuid()).pw_name


def intent() -> Intent:
    return Intent(
        device_id=DEVICE,
        name="HassTurnOn",
        text="turn on the light",  # words of the closed set, or the gate drops it
        confidence=0.9,
        timestamp_ms=time.time_ns() // 1_000_000,
    )


@dataclass
class Device:
    """A provisioned scratch root: its mosquitto and its link, each a process of its own."""

    prov: Provisioned
    config: Path
    credentials: Path
    outbox: Path
    log: Path
    mosquitto: subprocess.Popen[bytes] | None = None
    link: subprocess.Popen[bytes] | None = None
    ears_config: BusConfig = field(init=False)

    def out(self, value: str) -> str:
        """The id the link issues for a bus id (its key beside the outbox,
        `provision_device`)."""
        return reissue(id_key(self.outbox.with_name(ID_KEY_FILE)), value)

    def __post_init__(self) -> None:
        self.ears_config = BusConfig(
            socket=str(self.prov.socket),
            username="ears",
            password_file=str(self.prov.password_file("ears")),
        )

    def start_mosquitto(self) -> None:
        with self.log.open("ab") as err:
            self.mosquitto = subprocess.Popen(
                [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(self.prov.conf)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + WAIT_S
        while not accepts(self.prov.socket):
            assert self.mosquitto.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "mosquitto did not start"
            time.sleep(0.05)

    def start_link(self) -> None:
        with self.log.open("ab") as err:
            self.link = subprocess.Popen(
                [sys.executable, "-m", "pendant", "--config", str(self.config), "service", "link"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                # As pendant-link.service hands them over (LoadCredential=).
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "CREDENTIALS_DIRECTORY": str(self.credentials),
                },
            )

    def kill(self, *which: str) -> None:
        """SIGKILL, all at once: no goodbye, nothing flushed that was not already."""
        procs = [getattr(self, name) for name in which]
        for proc in procs:
            proc.kill()
        for proc in procs:
            assert proc.wait(timeout=WAIT_S) == -signal.SIGKILL

    def waiting(self) -> int:
        """Events in the link's outbox on disk (WAL lets a reader in beside the writer)."""
        if not self.outbox.exists():
            return 0
        with contextlib.closing(sqlite3.connect(self.outbox, timeout=WAIT_S)) as db:
            try:
                return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    def stop(self) -> None:
        for proc in (self.link, self.mosquitto):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=WAIT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=WAIT_S)


def _copy_secret(src: Path, dst: Path) -> None:
    dst.write_text(src.read_text())
    dst.chmod(0o600)


def provision_device(tmp: Path, home: LocalBroker, ca: Ca) -> Device:
    """As the image's first boot does it, with setup.toml's [home_broker] and its CA file."""
    assert home.port is not None
    prov = provision(
        tmp / "root",
        device_id=DEVICE,
        tls_port=free_port(),
        ws_port=free_port(),
        bind_address="127.0.0.1",
        run_as=ME,
        add_phones=("anna",),
        bridge_host="127.0.0.1",
        bridge_port=home.port,
        bridge_user="pendant",
        bridge_password_file=home.password_file("pendant"),
        bridge_cafile=str(ca.cert),
    )
    # In a directory of its own, as /var/lib/pendant is, so a power-cut test can mount over it.
    outbox = tmp / "var" / "outbox.sqlite"
    outbox.parent.mkdir()
    shipped = (REPO / "device/pendant/data/device-pendant.toml").read_text()
    text = shipped.replace('"/run/mosquitto/pendant.sock"', json.dumps(str(prov.socket)))
    text = text.replace('"/var/lib/pendant/outbox.sqlite"', json.dumps(str(outbox)))
    assert text != shipped
    config = prov.layout.etc / "pendant.toml"
    config.write_text(f'device_id = "{DEVICE}"\n' + text)
    extra = drop_in_dir(config)
    extra.mkdir(exist_ok=True)
    (extra / "00-test.toml").write_text(f"[link]\nintent_expiry_s = {EXPIRY_S}\n")
    credentials = tmp / "credentials"
    credentials.mkdir(mode=0o700)
    _copy_secret(prov.password_file("link"), credentials / "bus-password")
    _copy_secret(prov.layout.bridge_password_file, credentials / "home-password")
    id_key(outbox.with_name(ID_KEY_FILE))  # the link's key for the ids it issues, made now
    return Device(prov, config, credentials, outbox, tmp / "device.log")


class HomeAssistant:
    """A persistent subscriber on the home broker, over TLS; notes when each message came."""

    def __init__(self, home: LocalBroker, ca: Ca) -> None:
        self.home, self.ca = home, ca
        self.intents: list[tuple[str, float]] = []
        """(event id, its age in seconds when it arrived)."""
        self.subscribed = asyncio.Event()

    def ids(self) -> list[str]:
        return first_seen([i for i, _ in self.intents])

    async def run(self) -> None:
        tls = ssl.create_default_context(cafile=str(self.ca.cert))
        for _ in range(10_000):  # bounded: the test's own timeout ends it far sooner
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.home.port or 0,
                    username="ha",
                    password=self.home.password("ha"),
                    identifier="test-home-assistant",
                    clean_session=False,
                    tls_context=tls,
                    timeout=5,
                ) as client:
                    await client.subscribe(f"{BASE}/intent/#", qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        event = json.loads(bytes(m.payload))  # type: ignore[arg-type]
                        age_s = time.time() - event["timestamp_ms"] / 1000
                        self.intents.append((event["id"], age_s))
            except (aiomqtt.MqttError, OSError):
                await asyncio.sleep(0.2)


class Phone:
    """A paired phone on the device's TLS listener."""

    def __init__(self, prov: Provisioned) -> None:
        self.prov = prov
        self.ids: list[str] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        tls = ssl.create_default_context(cafile=str(self.prov.ca_cert))
        for _ in range(10_000):
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.prov.settings.tls_port,
                    username="phone-anna",
                    password=self.prov.password("phone-anna"),
                    identifier="test-phone",
                    tls_context=tls,
                    timeout=5,
                ) as client:
                    await client.subscribe(f"{BASE}/intent/#", qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        self.ids.append(json.loads(bytes(m.payload))["id"])  # type: ignore[arg-type]
            except (aiomqtt.MqttError, OSError):
                await asyncio.sleep(0.2)


async def publish(device: Device, events: list[Intent]) -> None:
    """As the ears do: QoS 1, each acknowledged (PUBACK) before the next."""
    async with bus.bus_client(device.ears_config, "test-ears") as ears:
        for event in events:
            await bus.publish(ears, event)


async def until_ready(device: Device, ha: HomeAssistant) -> None:
    """Until the link's bus session exists and the way home works: a probe arrives."""
    probe = intent()
    deadline = time.monotonic() + WAIT_S
    while device.out(probe.id) not in ha.ids():
        assert time.monotonic() < deadline, (
            f"no probe reached the home broker: {device.log.read_text()[-3000:]}"
        )
        await publish(device, [probe])  # same id: kept once
        await asyncio.sleep(0.3)


async def until_taken(device: Device, n: int) -> None:
    """Until the link has taken the ears' `n` intents: its outbox on disk holds them. (A link
    that hands them on to a broker that acknowledges at once never holds them: after a few
    seconds the test goes on, and finds out what that broker kept.)"""
    await within(lambda: device.waiting() >= n, 3.0)


@pytest.fixture
def ca(tmp_path: Path) -> Ca:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def home(tmp_path: Path, ca: Ca) -> Iterator[LocalBroker]:
    """The home broker: TLS, and sessions kept across its restart (Home Assistant's)."""
    cert, key = make_server(tmp_path / "home-cert", ca)
    broker = LocalBroker(
        users=("pendant", "ha"),
        tcp=True,
        tls=(cert, key),
        persistence=True,
        directory=tmp_path / "home",
        keep_passwords=True,
    )
    with broker:
        yield broker


@pytest.fixture
def device(tmp_path: Path, home: LocalBroker, ca: Ca) -> Iterator[Device]:
    d = provision_device(tmp_path, home, ca)
    d.start_mosquitto()
    d.start_link()
    try:
        yield d
    finally:
        d.stop()


@dataclass
class PowerCut:
    """The device with its two disks under `tests.support.powercut`: mosquitto's state directory and
    the link's outbox directory."""

    device: Device
    mounts: list[VolatileMount]

    def cut(self) -> None:
        """The power goes: whatever of mosquitto and the link still runs dies at once, then
        both disks lose their page cache."""
        self.device.kill(*(n for n in ("mosquitto", "link") if _alive(getattr(self.device, n))))
        for mount in self.mounts:
            mount.cut()


def _alive(proc: subprocess.Popen[bytes] | None) -> bool:
    return proc is not None and proc.poll() is None


@pytest.fixture
def powered(tmp_path: Path, home: LocalBroker, ca: Ca) -> Iterator[PowerCut]:
    """As `device`, on disks a power cut can be dealt to."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    d = provision_device(tmp_path, home, ca)
    disks = tmp_path / "disks"
    disks.mkdir()
    mounts = [
        VolatileMount(d.prov.layout.state_dir, disks / "mosquitto"),
        VolatileMount(d.outbox.parent, disks / "outbox"),
    ]
    with contextlib.ExitStack() as stack:
        for mount in mounts:
            stack.enter_context(mount)
        d.start_mosquitto()
        d.start_link()
        try:
            yield PowerCut(d, mounts)
        finally:
            d.stop()


def run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, TEST_S))


def test_the_shipped_config_sends_the_link_to_the_home_broker(
    tmp_path: Path, home: LocalBroker, ca: Ca
) -> None:
    """Provisioning a home broker makes it the link's (TLS, checked against its CA), keeps
    the device's mosquitto for phones, and renders no bridge."""
    d = provision_device(tmp_path, home, ca)
    link = load_config(d.config).link
    assert (link.host, link.port, link.username) == ("127.0.0.1", home.port, "pendant")
    assert link.uses_tls and link.cafile == str(ca.cert)
    assert link.socket == str(d.prov.socket) and link.phones_apart
    assert link.intent_expiry_s == EXPIRY_S
    assert not list(d.prov.layout.conf_dir.rglob("bridge*.conf"))
    assert "include_dir" not in d.prov.conf.read_text()


@pytest.mark.parametrize("password", ["secret\n", "unset", ""])
def test_the_link_gets_the_home_password_as_a_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    """pendant-link.service hands the home broker's password over as `home-password`, or an
    `unset` (SetCredential=) when no home broker was provisioned: then it is not used."""
    from pendant.app.services import as_service
    from pendant.core.config import Config, LinkConfig

    (tmp_path / "home-password").write_text(password)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = Config(link=LinkConfig(socket="/s", host="ha.lan", username="pendant"))
    link = as_service(cfg, "link").link
    want = str(tmp_path / "home-password") if password == "secret\n" else None
    assert link.password_file == want
    assert as_service(cfg, "ears").link.password_file is None


def test_an_outage_longer_than_the_expiry_delivers_nothing_late(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    """The review's first finding: intents spoken while the home broker was away arrived when
    it came back, however late. Now those older than link.intent_expiry_s never arrive; a
    shorter outage delivers everything, in order, within the expiry; and a phone on the
    device's own listener hears them all at once, outage or not."""
    run(_outages(device, home, ca))


async def _outages(device: Device, home: LocalBroker, ca: Ca) -> None:
    ha, phone = HomeAssistant(home, ca), Phone(device.prov)
    async with running(ha.run(), phone.run()):
        await asyncio.wait_for(ha.subscribed.wait(), WAIT_S)
        await asyncio.wait_for(phone.subscribed.wait(), WAIT_S)
        await until_ready(device, ha)

        # Longer than the expiry.
        home.stop()
        stale = [intent() for _ in range(3)]
        await publish(device, stale)
        await until_taken(device, len(stale))
        await until(lambda: {device.out(e.id) for e in stale} <= set(phone.ids), "the phone, live")
        await asyncio.sleep(EXPIRY_S + 1.0)
        home.start()  # same port, same sessions
        fence = intent()
        await publish(device, [fence])
        await until(lambda: device.out(fence.id) in ha.ids(), "an intent spoken after the outage")
        late = [i for i in ha.ids() if i in {device.out(e.id) for e in stale}]
        assert late == [], f"{len(late)} intents arrived after link.intent_expiry_s"

        # Shorter than the expiry: everything, in order, none of it late.
        home.stop()
        fresh = [intent() for _ in range(3)]
        await publish(device, fresh)
        await until_taken(device, len(fresh))
        home.start()
        ids = {device.out(e.id) for e in fresh}
        await until(lambda: ids <= set(ha.ids()), "every intent of a short outage")
        assert [i for i in ha.ids() if i in ids] == [device.out(e.id) for e in fresh]
    ages = [age for _, age in ha.intents]
    assert max(ages) <= EXPIRY_S + 1.0, f"an intent arrived {max(ages):.1f} s old"


def test_an_intent_waiting_on_the_home_broker_for_home_assistant_expires_there(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    """Home Assistant away, its session kept: the home broker queues for it. Each publish
    carries an MQTT 5 Message Expiry Interval (what is left of link.intent_expiry_s), so an
    intent that waited there past it is dropped by the broker, not delivered late."""
    run(_waiting_on_home(device, home, ca))


async def _waiting_on_home(device: Device, home: LocalBroker, ca: Ca) -> None:
    ha = HomeAssistant(home, ca)
    async with running(ha.run()) as (task,):
        await asyncio.wait_for(ha.subscribed.wait(), WAIT_S)
        await until_ready(device, ha)
        task.cancel()  # Home Assistant goes away; the broker keeps its subscription
    stale = intent()
    await publish(device, [stale])
    await until_taken(device, 1)
    await until(lambda: device.waiting() == 0, "the link to hand it to the home broker")
    await asyncio.sleep(EXPIRY_S + 1.0)
    back = HomeAssistant(home, ca)  # the same client id: the same session
    async with running(back.run()):
        fence = intent()
        await publish(device, [fence])
        await until(lambda: device.out(fence.id) in back.ids(), "an intent spoken after its return")
    assert device.out(stale.id) not in back.ids(), (
        "an intent waited on the home broker past its expiry"
    )


def test_mosquitto_killed_after_the_ears_were_acknowledged_loses_nothing(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    """The review's second finding: a `kill -9` of the device's mosquitto (a power cut, for
    mosquitto: it snapshots every 60 s) lost every intent it held for the home broker."""
    run(_killed(device, home, ca, "mosquitto"))


def test_the_link_killed_after_taking_the_intents_loses_nothing(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    run(_killed(device, home, ca, "link"))


def test_a_power_cut_loses_nothing_the_link_took(
    powered: PowerCut, home: LocalBroker, ca: Ca
) -> None:
    """mosquitto and the link die at the same instant, and every write not fsynced with them
    (`tests.support.powercut`). The outbox commits with an fsync of its WAL (synchronous=FULL), and
    SQLite fsynced the directory when it made the WAL, so what the link took comes back;
    mosquitto comes back with whatever its last durable save held (nothing: see below)."""
    run(_killed(powered.device, home, ca, "mosquitto", "link", cut=powered.cut))


def test_intents_waiting_on_the_bus_for_the_link_survive_mosquitto_killed(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    """The link is away (restarting), so what the ears say waits in the device's mosquitto,
    acknowledged to them; mosquitto is then killed. It saved its queue once a minute, so this
    lost every intent said since; now it saves on each change."""
    run(_waiting_on_the_bus(device, home, ca))


def test_intents_waiting_on_the_bus_for_the_link_survive_a_power_cut(
    powered: PowerCut, home: LocalBroker, ca: Ca
) -> None:
    """The link is away, so what the ears say waits in the device's mosquitto, acknowledged
    to them; the power goes once mosquitto saved. Its save is durable only as far as the
    rename in its state directory is, and it never fsyncs that directory: on ext4 the rename
    reached the disk with the next journal commit (30 s on the image), in the strict model
    never, and all 3 were lost. Provisioning now marks that directory `chattr +D`, so the
    rename is written through (`pendant.core.state.write_names_through`)."""
    run(_waiting_on_the_bus(powered.device, home, ca, cut=powered.cut))


def test_no_other_login_can_take_over_the_links_session(
    device: Device, home: LocalBroker, ca: Ca
) -> None:
    """A review found that any login of the device's mosquitto (a paired phone, over TLS)
    could connect with the link's fixed client id, `pendant-link`: mosquitto then closed the
    link's session, and with it the intents queued there for the link (0 of 3 arrived). Each
    service's client id is now tagged with what only its own password gives
    (`bus.private_client_id`), so the ids a phone can know take nothing."""
    run(_taken_over(device, home, ca))


async def _taken_over(device: Device, home: LocalBroker, ca: Ca) -> None:
    ha = HomeAssistant(home, ca)
    async with running(ha.run()):
        await asyncio.wait_for(ha.subscribed.wait(), WAIT_S)
        await until_ready(device, ha)  # the link's bus session exists: mosquitto queues for it
        device.kill("link")
        sent = [intent() for _ in range(3)]
        await publish(device, sent)  # every one acknowledged to the ears
        tls = ssl.create_default_context(cafile=str(device.prov.ca_cert))
        # The ids the services had: the link's on the bus and towards phones, the ears'.
        for identifier in ("pendant-link", f"pendant-{DEVICE}", "pendant-ears"):
            async with aiomqtt.Client(
                "127.0.0.1",
                device.prov.settings.tls_port,
                username="phone-anna",
                password=device.prov.password("phone-anna"),
                identifier=identifier,
                clean_session=True,  # a clean start drops whatever session had that id
                tls_context=tls,
                timeout=5,
            ):
                pass
        device.start_link()
        await all_arrive_in_order(ha, sent, device.out)


async def all_arrive_in_order(
    ha: HomeAssistant, sent: list[Intent], out: Callable[[str], str]
) -> None:
    """Every one of `sent` reaches Home Assistant, in order, before it would have expired
    (`out`: the ids the link issues, `Device.out`)."""
    ids = {out(e.id) for e in sent}
    await within(lambda: ids <= set(ha.ids()), EXPIRY_S)
    got = [i for i in ha.ids() if i in ids]
    assert got == [out(e.id) for e in sent], f"{len(sent) - len(got)} of {len(sent)} lost"


async def _waiting_on_the_bus(
    device: Device, home: LocalBroker, ca: Ca, cut: Callable[[], None] | None = None
) -> None:
    ha = HomeAssistant(home, ca)
    async with running(ha.run()):
        await asyncio.wait_for(ha.subscribed.wait(), WAIT_S)
        await until_ready(device, ha)  # the link's bus session exists: mosquitto queues for it
        device.kill("link")
        saved = device.prov.layout.state_dir / "mosquitto.db"
        before = saved.stat().st_mtime_ns if saved.exists() else 0
        sent = [intent() for _ in range(3)]
        await publish(device, sent)  # every one acknowledged to the ears
        # The PUBACK goes out a loop turn before the save (a window of milliseconds, which
        # no configuration closes); the kill comes once mosquitto wrote or after 5 s.
        await within(lambda: saved.exists() and saved.stat().st_mtime_ns > before, 5)
        await asyncio.sleep(0.2)
        device.kill("mosquitto")
        if cut is not None:
            cut()
        device.start_mosquitto()
        device.start_link()
        await all_arrive_in_order(ha, sent, device.out)


async def _killed(
    device: Device,
    home: LocalBroker,
    ca: Ca,
    *victims: str,
    cut: Callable[[], None] | None = None,
) -> None:
    ha = HomeAssistant(home, ca)
    async with running(ha.run()):
        await asyncio.wait_for(ha.subscribed.wait(), WAIT_S)
        await until_ready(device, ha)
        home.stop()
        sent = [intent() for _ in range(3)]
        await publish(device, sent)  # every one acknowledged to the ears
        await until_taken(device, len(sent))
        device.kill(*victims)
        if cut is not None:
            cut()
        if "mosquitto" in victims:
            device.start_mosquitto()
        if "link" in victims:
            device.start_link()
        home.start()
        await all_arrive_in_order(ha, sent, device.out)
