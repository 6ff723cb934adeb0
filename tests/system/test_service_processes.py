"""`pendant service NAME` as systemd runs it: real processes, real mosquitto, and this test
playing systemd's part on a notify socket of its own (READY, STOPPING, the watchdog pings).

The watchdog logic (a stale beat or a blocked loop stops the pings) is also tested in
process, where the test controls the loop, because a real service's loop cannot be hung on
purpose from outside without stopping the whole process (SIGSTOP proves nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from pendant.app.local_broker import LocalBroker, free_port
from pendant.core import bus
from pendant.core import systemd as notify
from pendant.core.config import BusConfig, LinkConfig, load_config
from pendant.core.events import Mic
from pendant.setup.provision import Provisioned
from tests.conftest import DEMO_CONFIG, speech_files
from tests.support.mosquitto_support import Client, _provision_for_test, endpoint, running

# Generous: the ears load the VAD and build the grammar before READY, on a busy CI machine.
READY_TIMEOUT_S = 90.0
EVENT_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0
WATCHDOG_USEC = 1_000_000  # 1 s: pings every 0.5 s
WAV_STEM = "set a timer for 5 minutes"
WAV_INTENT = "HassStartTimer"

Brokers = tuple[LocalBroker, LocalBroker]


# --- playing systemd: the notify socket ----------------------------------------------------


@dataclass
class Notification:
    fields: dict[str, str]


@dataclass
class NotifySocket:
    """A unix datagram socket bound where $NOTIFY_SOCKET says, as systemd's would be."""

    path: Path
    sock: socket.socket = field(init=False)
    seen: list[Notification] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def close(self) -> None:
        self.sock.close()

    async def next(self, timeout_s: float) -> Notification:
        """The next datagram, or TimeoutError."""
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout_s)
        lines = data.decode().splitlines()
        note = Notification(dict(line.split("=", 1) for line in lines if "=" in line))
        self.seen.append(note)
        return note

    async def wait_for(self, key: str, value: str, timeout_s: float) -> Notification:
        """Read until a datagram carries key=value; everything read is kept in `seen`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {key}={value} within {timeout_s} s; got {self.summary()}")
            try:
                note = await self.next(remaining)
            except TimeoutError:
                continue  # the deadline check above reports it
            if note.fields.get(key) == value:
                return note

    def drain(self) -> int:
        """Read whatever is queued now, without waiting; how many datagrams that was."""
        n = 0
        while True:
            try:
                self.sock.recv(4096)
            except BlockingIOError:
                return n
            n += 1

    def count(self, key: str, value: str) -> int:
        return sum(1 for n in self.seen if n.fields.get(key) == value)

    def summary(self) -> list[str]:
        return [",".join(f"{k}={v}" for k, v in n.fields.items()) for n in self.seen]


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short directory of its own: unix socket paths are limited to 108 bytes, and pytest's
    # tmp_path can be longer than that.
    with tempfile.TemporaryDirectory(prefix="pn-") as d:
        ns = NotifySocket(Path(d) / "notify")
        try:
            yield ns
        finally:
            ns.close()


# --- the service as a process ---------------------------------------------------------------


def toml_str(value: str | Path) -> str:
    # A JSON string is a valid TOML basic string for the paths used here.
    return json.dumps(str(value))


def write_config(
    path: Path, brokers: Brokers, wav: Path | None = None, home_port: int | None = None
) -> Path:
    """The demo home, pointed at the test's brokers, with `wav` (if any) as the microphone;
    `home_port` points the link elsewhere (a port where nothing listens, say)."""
    bus_broker, home = brokers
    models = os.environ.get("PENDANT_MODELS_CACHE")
    # The link's durable outbox (a key that comes with the outbox) defaults to the device's
    # /var/lib/pendant; keep the test's next to its config, so no run leaves events behind
    # for the next one, or on the host.
    outbox = (
        [f"outbox_path = {toml_str(path.parent / 'outbox.sqlite')}"]
        if "outbox_path" in LinkConfig.model_fields
        else []
    )
    text = DEMO_CONFIG.read_text() + "\n".join(
        [
            "",
            "[audio]",
            'source = "wav"',
            f"files = [{toml_str(wav)}]" if wav else "files = []",
            "realtime = true",
            "",
            "[bus]",
            f"socket = {toml_str(bus_broker.socket_path)}",
            'username = "pendant"',
            f"password_file = {toml_str(bus_broker.password_file('pendant'))}",
            "",
            "[link]",
            'host = "127.0.0.1"',
            f"port = {home_port or home.port}",
            'username = "link"',
            f"password_file = {toml_str(home.password_file('link'))}",
            *outbox,
            "",
            *(["[models]", f"cache_dir = {toml_str(models)}", ""] if models else []),
        ]
    )
    path.write_text(text)
    return path


def service_env(notify_path: Path, watchdog_usec: int = WATCHDOG_USEC) -> dict[str, str]:
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = str(notify_path)
    env["WATCHDOG_USEC"] = str(watchdog_usec)
    # Unset, as with systemd's WATCHDOG_PID pointing at the main process: the child itself
    # is the one watched.
    env.pop("WATCHDOG_PID", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Service:
    proc: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def wait(self, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout_s)

    async def stop(self) -> None:
        """Kill it if a failed test left it running, so no process outlives the test."""
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT_S)


async def start_service(
    name: str,
    config: Path,
    notify_path: Path,
    log: Path,
    prelude: str = "",
    wrapper: Sequence[str] = (),
    watchdog_usec: int = WATCHDOG_USEC,
) -> Service:
    """`python -m pendant --config FILE service NAME`, as ExecStart= runs it.

    `prelude` is Python run in the child before the CLI, to put it under a restriction first;
    `wrapper` is a command line that execs the rest (an `unshare ...`, say).
    """
    args = ["--config", str(config), "service", name]
    if prelude:
        code = f"{prelude}\nimport sys, runpy\nsys.argv = ['pendant', *{args!r}]\n"
        code += "runpy.run_module('pendant', run_name='__main__')\n"
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, "-m", "pendant", *args]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *wrapper,
            *cmd,
            env=service_env(notify_path, watchdog_usec),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(proc, log)


def watcher_bus_config(broker: LocalBroker) -> BusConfig:
    """The bus as a client other than the services sees it (its own user and password)."""
    return BusConfig(
        socket=str(broker.socket_path),
        username="intruder",
        password_file=str(broker.password_file("intruder")),
    )


async def watch_bus(
    broker: LocalBroker, seen: list[dict[str, object]], ready: asyncio.Event
) -> None:
    """Collect every event on the device-local bus (the test's bus has no ACL)."""
    async with bus.bus_client(watcher_bus_config(broker), "test-watcher") as client:
        await client.subscribe(f"{bus.PREFIX}/#", qos=1)
        ready.set()
        async for message in client.messages:
            seen.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]


async def cancel(*tasks: asyncio.Task[object]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def wav_file() -> Path:
    return next(f for f in speech_files("main") if f.stem == WAV_STEM)


# --- the ears -------------------------------------------------------------------------------


async def run_ears(
    brokers: Brokers,
    notify_socket: NotifySocket,
    tmp_path: Path,
    prelude: str = "",
    wrapper: Sequence[str] = (),
) -> tuple[Service, list[dict[str, object]]]:
    """Start the ears on one WAV, read notifications until the process exits (the WAV ends)."""
    config = write_config(tmp_path / "pendant.toml", brokers, wav_file())
    events: list[dict[str, object]] = []
    subscribed = asyncio.Event()
    watcher = asyncio.create_task(watch_bus(brokers[0], events, subscribed))
    await asyncio.wait_for(subscribed.wait(), EVENT_TIMEOUT_S)
    service = await start_service(
        "ears", config, notify_socket.path, tmp_path / "ears.log", prelude, wrapper
    )
    try:
        await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
        # A few seconds of audio (the WAV and the gap after it), then the source ends and the
        # service returns. Bounded: the deadline, not the process, ends this loop.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT_S
        while service.proc.returncode is None and loop.time() < deadline:
            with contextlib.suppress(TimeoutError):
                await notify_socket.next(0.25)
        await service.wait()
        notify_socket.drain()
        await asyncio.sleep(0.5)  # QoS 1 deliveries to the watcher still in flight
    finally:
        await service.stop()
        await cancel(watcher)
    return service, events


def test_ears_service_reports_ready_and_pings_the_watchdog_while_audio_plays(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    service, events = asyncio.run(
        asyncio.wait_for(run_ears(brokers, notify_socket, tmp_path), READY_TIMEOUT_S * 2)
    )
    out = service.output()
    assert service.proc.returncode == 0, out  # a finite WAV source ends: a clean exit
    summary = notify_socket.summary()
    ready_at = next(i for i, n in enumerate(notify_socket.seen) if n.fields.get("READY") == "1")
    pings = [n for n in notify_socket.seen[ready_at:] if n.fields.get("WATCHDOG") == "1"]
    # ~4 s of audio at one ping per 0.5 s: "repeatedly", with room for a slow machine.
    assert len(pings) >= 3, (summary, out)
    assert "listening" in notify_socket.seen[ready_at].fields.get("STATUS", ""), summary
    # Start-up says what it is doing and asks for time step by step (EXTEND_TIMEOUT_USEC), so a
    # slow board that is still loading is not killed by TimeoutStartSec= mid-way.
    steps = [n for n in notify_socket.seen[:ready_at] if "EXTEND_TIMEOUT_USEC" in n.fields]
    assert steps and int(steps[0].fields["EXTEND_TIMEOUT_USEC"]) >= 60_000_000, summary
    assert [s.fields.get("STATUS") for s in steps] == [
        "loading ears",  # the import of the ears' code (`pendant.app.services.serve`)
        "loading the speech models",
        "building the grammar",
    ], summary
    # The process did its work: it heard the WAV and published the intent on the bus.
    intents = [e["name"] for e in events if e.get("type") == "intent"]
    assert intents == [WAV_INTENT], (events, out)


PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
# Run in the child before the pendant is imported: from here on the kernel refuses any mapping
# that is (or becomes) both writable and executable, and any mprotect() that adds PROT_EXEC.
MDWE_PRELUDE = f"""
import ctypes, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):
    sys.exit(77)
"""


def mdwe_supported() -> bool:
    """PR_SET_MDWE exists since Linux 6.3; probe it in a throwaway child."""
    probe = subprocess.run([sys.executable, "-c", MDWE_PRELUDE], timeout=30, check=False)
    return probe.returncode == 0


def test_ears_work_without_writable_executable_memory(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """The ground for MemoryDenyWriteExecute=yes in pendant-ears.service: onnxruntime,
    numpy, pocketsphinx and webrtcvad load and hear under the kernel's own W^X (PR_SET_MDWE,
    which newer systemd uses for that setting; 252 uses a seccomp filter that refuses the same
    writable-and-executable mappings, and any mprotect() with PROT_EXEC)."""
    if not mdwe_supported():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux < 6.3)")
    service, events = asyncio.run(
        asyncio.wait_for(
            run_ears(brokers, notify_socket, tmp_path, MDWE_PRELUDE), READY_TIMEOUT_S * 2
        )
    )
    assert service.proc.returncode == 0, service.output()
    assert [e["name"] for e in events if e.get("type") == "intent"] == [WAV_INTENT]


# What ProtectProc=invisible and ProcSubset=pid make of /proc: other users' processes and
# everything that is not a process (cpuinfo, meminfo, sys, ...) are gone.
PROC_AS_SANDBOXED = 'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec "$@"'


def sandbox_wrapper() -> list[str] | None:
    """A command line that runs the rest in a new, empty network namespace (PrivateNetwork=)
    with /proc as the units restrict it; None where that cannot be done (not root, ...)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return None
    wrapper = [unshare, "--mount", "--net", "--propagation", "private"]
    wrapper += ["sh", "-c", PROC_AS_SANDBOXED, "sandbox"]
    probe = subprocess.run([*wrapper, "true"], capture_output=True, timeout=30, check=False)
    return wrapper if probe.returncode == 0 else None


def test_ears_work_in_their_sandbox_with_no_network_and_a_bare_proc(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """The ground for PrivateNetwork=yes, ProtectProc=invisible and ProcSubset=pid (and W^X
    where the kernel has it) in pendant-ears.service: in an empty network namespace the bus's
    unix socket still works, and the ears need no /proc/cpuinfo (onnxruntime warns that it
    cannot read it, and runs). The service user and seccomp are not reproduced here."""
    wrapper = sandbox_wrapper()
    if wrapper is None:
        pytest.skip("needs root and unshare(1) for a network and mount namespace")
    prelude = MDWE_PRELUDE if mdwe_supported() else ""
    service, events = asyncio.run(
        asyncio.wait_for(
            run_ears(brokers, notify_socket, tmp_path, prelude, wrapper), READY_TIMEOUT_S * 2
        )
    )
    assert service.proc.returncode == 0, service.output()
    assert [e["name"] for e in events if e.get("type") == "intent"] == [WAV_INTENT]


# --- the link -------------------------------------------------------------------------------


async def retained_availability(home: LocalBroker, topic: str) -> str:
    """What a newcomer to the home broker is told about the pendant's availability."""
    async with aiomqtt.Client(
        "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
    ) as viewer:
        await viewer.subscribe(topic, qos=1)
        async for message in viewer.messages:
            return bytes(message.payload).decode()  # type: ignore[arg-type]
    raise AssertionError("unreachable: the messages iterator does not end")


async def link_lifecycle(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> tuple[Service, str, str]:
    bus_broker, home = brokers
    config = write_config(tmp_path / "pendant.toml", brokers)
    device_id = load_config(config).device_id
    availability = f"pendant/{device_id}/availability"
    service = await start_service("link", config, notify_socket.path, tmp_path / "link.log")
    try:
        await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
        # READY means subscribed: an event published on the bus right after it is relayed
        # (the link's first session has nothing queued, so one sent before it subscribed
        # would be lost).
        status_topic = f"pendant/{device_id}/status"
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer:
            await viewer.subscribe(status_topic, qos=1)
            async with bus.bus_client(watcher_bus_config(bus_broker), "test-ears") as ears:
                await bus.publish(ears, Mic(device_id=device_id, state="ready"))

            async def first_status() -> dict[str, object]:
                async for message in viewer.messages:
                    return json.loads(bytes(message.payload))  # type: ignore[arg-type]
                raise AssertionError("unreachable")

            relayed = await asyncio.wait_for(first_status(), EVENT_TIMEOUT_S)
        assert relayed["state"] == "ready"
        online = await asyncio.wait_for(retained_availability(home, availability), EVENT_TIMEOUT_S)
        # Idle now (nothing on the bus): the loop still turns, so the pings go on.
        pings_at_idle = notify_socket.count("WATCHDOG", "1")
        for _ in range(3):
            await notify_socket.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
        assert notify_socket.count("WATCHDOG", "1") >= pings_at_idle + 3
        service.proc.send_signal(signal.SIGTERM)
        await notify_socket.wait_for("STOPPING", "1", EXIT_TIMEOUT_S)
        await service.wait()
        offline = await asyncio.wait_for(retained_availability(home, availability), EVENT_TIMEOUT_S)
    finally:
        await service.stop()
    return service, online, offline


def test_link_service_ready_when_subscribed_pings_while_idle_and_stops_cleanly(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    service, online, offline = asyncio.run(
        asyncio.wait_for(link_lifecycle(brokers, notify_socket, tmp_path), READY_TIMEOUT_S * 2)
    )
    assert online == "online", service.output()
    assert service.proc.returncode == 0, service.output()  # SIGTERM is a clean stop
    assert offline == "offline", service.output()  # said at once, retained for newcomers


# The link's watchdog follows its outbox sender (pendant.link.service, "The watchdog"). 2 s: the
# sender reads the outbox every 0.5 s when idle; pings every 1 s.
LINK_WATCHDOG_USEC = 2_000_000
LINK_QUIET_S = 3 * LINK_WATCHDOG_USEC / 1_000_000


async def pings_within(notify_socket: NotifySocket, seconds: float) -> int:
    """How many WATCHDOG=1 arrive in the next `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    before = notify_socket.count("WATCHDOG", "1")
    with contextlib.suppress(TimeoutError):
        while (left := deadline - loop.time()) > 0:
            await notify_socket.next(left)
    return notify_socket.count("WATCHDOG", "1") - before


async def link_with_a_broken_outbox(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> tuple[Service, int, int]:
    """Pings while healthy and idle, then the outbox file stops reading: pings after that."""
    bus_broker, _ = brokers
    config = write_config(tmp_path / "pendant.toml", brokers)
    device_id = load_config(config).device_id
    service = await start_service(
        "link", config, notify_socket.path, tmp_path / "link.log", watchdog_usec=LINK_WATCHDOG_USEC
    )
    try:
        await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
        for _ in range(3):  # healthy and idle: the sender finds nothing waiting, and says so
            await notify_socket.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
        healthy = notify_socket.count("WATCHDOG", "1")
        # The link's own outbox, its real SQLite file, stops answering reads: not damage
        # SQLite recognises (that is set aside), an error on every read, for good.
        with contextlib.closing(sqlite3.connect(tmp_path / "outbox.sqlite")) as db:
            db.execute("DROP TABLE outbox")
            db.commit()
        # Something to send, which the sender can no longer read back.
        async with bus.bus_client(watcher_bus_config(bus_broker), "test-ears") as ears:
            await bus.publish(ears, Mic(device_id=device_id, state="ready"))
        await asyncio.sleep(2 * LINK_WATCHDOG_USEC / 1_000_000)  # the last beat goes stale
        notify_socket.drain()
        after = await pings_within(notify_socket, LINK_QUIET_S)
        assert service.proc.returncode is None, service.output()  # still running, not pinging
    finally:
        await service.stop()
    return service, healthy, after


def test_a_link_whose_outbox_stops_reading_stops_pinging(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    service, healthy, after = asyncio.run(
        asyncio.wait_for(
            link_with_a_broken_outbox(brokers, notify_socket, tmp_path), READY_TIMEOUT_S * 2
        )
    )
    assert healthy >= 3, service.output()
    assert after == 0, service.output()
    assert "outbox sender stalled" in service.output()


async def link_without_its_home_broker(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> tuple[Service, int]:
    nobody = free_port()  # nothing listens there: the home broker is down
    config = write_config(tmp_path / "pendant.toml", brokers, home_port=nobody)
    service = await start_service(
        "link", config, notify_socket.path, tmp_path / "link.log", watchdog_usec=LINK_WATCHDOG_USEC
    )
    try:
        await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
        # Past the longest reconnect delay (RECONNECT_MAX_S, 5 s) more than once.
        pings = await pings_within(notify_socket, 12.0)
    finally:
        await service.stop()
    return service, pings


def test_a_link_waiting_for_its_home_broker_keeps_pinging(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """A home broker that is down is not the link's fault: no restart loop over it."""
    service, pings = asyncio.run(
        asyncio.wait_for(
            link_without_its_home_broker(brokers, notify_socket, tmp_path), READY_TIMEOUT_S * 2
        )
    )
    # One ping a second for 12 s; a few may be lost to a busy machine, none to the outage.
    assert pings >= 9, service.output()
    assert "unreachable" in service.output()


def write_shipped_link_config(path: Path, prov: Provisioned, home: LocalBroker) -> Path:
    """The link as on the pendant: the rendered mosquitto for the bus and the phones (its own
    login there), the home broker beside it."""
    path.write_text(
        DEMO_CONFIG.read_text()
        + "\n".join(
            [
                "",
                "[bus]",
                f"socket = {toml_str(prov.socket)}",
                'username = "link"',
                f"password_file = {toml_str(prov.password_file('link'))}",
                "",
                "[link]",
                f"socket = {toml_str(prov.socket)}",
                'host = "127.0.0.1"',
                f"port = {home.port}",
                'username = "link"',
                f"password_file = {toml_str(home.password_file('link'))}",
                f"outbox_path = {toml_str(path.parent / 'outbox.sqlite')}",
                "",
            ]
        )
    )
    return path


async def link_with_a_frozen_phones_broker(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> tuple[Service, int, int, bytes]:
    """The shipped topology: the device's mosquitto (rendered config, ACL) and a home broker.
    Pings while healthy; then the device's mosquitto stops answering (SIGSTOP) just as the
    phones' sender has something for it: pings after that, and what the home broker got."""
    _, home = brokers
    device_id = load_config(DEMO_CONFIG).device_id
    prov = _provision_for_test(tmp_path / "device", device_id=device_id, add_phones=("alice",))
    config = write_shipped_link_config(tmp_path / "pendant.toml", prov, home)
    base = f"pendant/{device_id}"
    with running(prov) as mosquitto:
        phone = Client(endpoint(prov, "tls"), "phone-alice", prov.password("phone-alice"))
        assert not phone.open().is_failure
        service = await start_service(
            "link", config, notify_socket.path, tmp_path / "link.log",
            watchdog_usec=LINK_WATCHDOG_USEC,
        )  # fmt: skip
        try:
            phone.subscribe(f"{base}/availability")
            await asyncio.to_thread(phone.until, f"{base}/availability", b"online")
            await notify_socket.wait_for("READY", "1", READY_TIMEOUT_S)
            for _ in range(3):  # healthy and idle: both senders find nothing waiting
                await notify_socket.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
            healthy = notify_socket.count("WATCHDOG", "1")
            async with aiomqtt.Client(
                "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
            ) as viewer:
                await viewer.subscribe(f"{base}/error", qos=1)
                mosquitto.send_signal(signal.SIGSTOP)
                try:
                    # A malformed command from the home broker: its error goes to both
                    # brokers, so the phones' sender now waits on a broker that never answers.
                    await viewer.publish(f"{base}/cmd/bogus", b"{}", qos=1)
                    message = await asyncio.wait_for(anext(viewer.messages), EVENT_TIMEOUT_S)
                    # The phones' sender's last beat goes stale (a PUBACK wait lasts 10 s).
                    await asyncio.sleep(1.25 * LINK_WATCHDOG_USEC / 1_000_000)
                    notify_socket.drain()
                    after = await pings_within(notify_socket, 2 * LINK_WATCHDOG_USEC / 1_000_000)
                finally:
                    mosquitto.send_signal(signal.SIGCONT)
            assert service.proc.returncode is None, service.output()  # not pinging, running
        finally:
            phone.close()
            await service.stop()
    return service, healthy, after, bytes(message.payload)  # type: ignore[arg-type]


def test_a_link_whose_phones_sender_stalls_stops_pinging(
    brokers: Brokers, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    """The watchdog covers both senders: the home broker's sender idling (and beating) does
    not hide a phones' sender stuck on a device mosquitto that no longer answers."""
    service, healthy, after, error = asyncio.run(
        asyncio.wait_for(
            link_with_a_frozen_phones_broker(brokers, notify_socket, tmp_path),
            READY_TIMEOUT_S * 2,
        )
    )
    assert healthy >= 3, service.output()
    assert json.loads(error)["command"] == "bogus"  # the home side went on working
    assert after == 0, service.output()
    assert "phones' sender stalled" in service.output()


# --- the watchdog logic, in process ---------------------------------------------------------

INTERVAL_S = 0.2  # WatchdogSec= as the test plays it: pings every 0.1 s
QUIET_S = 5 * INTERVAL_S  # long enough to see several pings if any were still sent


@pytest.fixture
def notify_env(notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch) -> NotifySocket:
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_socket.path))
    return notify_socket


def test_watchdog_pings_only_while_the_main_loop_beats(
    notify_env: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    heartbeat = notify.Heartbeat()

    async def scenario() -> None:
        beating = True

        async def main_loop() -> None:
            while beating:
                heartbeat.beat()
                await asyncio.sleep(INTERVAL_S / 4)

        work = asyncio.create_task(main_loop())
        dog = asyncio.create_task(notify.watchdog(heartbeat, interval_s=INTERVAL_S))
        try:
            for _ in range(5):
                await notify_env.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
            # The loop keeps running but its work stops (no audio arriving): the beat goes stale.
            beating = False
            await asyncio.wait_for(work, EVENT_TIMEOUT_S)
            await asyncio.sleep(2 * INTERVAL_S)  # past the interval: from now on, no pings
            notify_env.drain()  # pings sent while the beat was still young
            with pytest.raises(TimeoutError):
                await notify_env.next(QUIET_S)
            # And when the work resumes, so do the pings.
            heartbeat.beat()
            await notify_env.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
        finally:
            await cancel(work, dog)

    with caplog.at_level(logging.ERROR, logger="pendant.core.systemd"):
        asyncio.run(asyncio.wait_for(scenario(), EVENT_TIMEOUT_S * 2))
    assert any("stalled" in r.getMessage() for r in caplog.records)


def test_a_blocked_event_loop_sends_no_pings(notify_env: NotifySocket) -> None:
    heartbeat = notify.Heartbeat()

    async def scenario() -> None:
        beat = asyncio.create_task(notify.beat_while_alive(heartbeat, INTERVAL_S / 4))
        dog = asyncio.create_task(notify.watchdog(heartbeat, interval_s=INTERVAL_S))
        try:
            for _ in range(3):
                await notify_env.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)

            async def hang() -> None:
                # Blocks the whole loop, as a CPU-bound or blocking call in the main loop
                # would. The pings are sent by this thread, so every one sent so far is
                # already queued on the socket; drain them, then nothing may arrive at all.
                notify_env.drain()
                notify_env.sock.settimeout(QUIET_S)
                try:
                    with pytest.raises(TimeoutError):
                        notify_env.sock.recv(4096)
                finally:
                    notify_env.sock.setblocking(False)

            await hang()
            # Unblocked, the loop turns again, beats, and the pings come back.
            await notify_env.wait_for("WATCHDOG", "1", EVENT_TIMEOUT_S)
        finally:
            await cancel(beat, dog)

    asyncio.run(asyncio.wait_for(scenario(), EVENT_TIMEOUT_S * 2))


def test_watchdog_is_off_unless_systemd_watches_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert notify.watchdog_interval_s() is None
    monkeypatch.setenv("WATCHDOG_USEC", "2500000")
    assert notify.watchdog_interval_s() == 2.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval_s() == 2.5
    # Meant for another process (a parent that exec'd us, say): not ours to ping for.
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert notify.watchdog_interval_s() is None
