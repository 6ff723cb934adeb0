"""The six services' memory as the device holds it: PSS and USS, idle and at the peak of work.

    python tools/bench_services.py [--out FILE]     (also part of `make bench`)

Starts the services as their units do (`pendant --config FILE service NAME`, and `python -m
pendant.web` with the ExecStart= arguments; the units' Environment=), all at once, each with its
own bus login passed as a systemd credential ($CREDENTIALS_DIRECTORY), its own $NOTIFY_SOCKET
and $STATE_DIRECTORY, on the device's mosquitto as `pendant.setup.provision` renders it (ACLs,
TLS listener for the phones) and a home broker for the link. Only the hardware is simulated: the
microphone plays WAV files in real time, the camera serves the bundled images, the pins are
gpiozero's mocks.

- idle: every service READY, then settled (SETTLE_S); the median of IDLE_SAMPLES readings,
  one a second, while the ears listen to digital silence.
- peak: the highest reading, every SAMPLE_S, while the ears hear a spoken command (until its
  intent reaches the home broker) and then a paired phone asks for CAPTURES captures over the
  phones' TLS listener (each until its scene reaches the home broker). A sampled peak is a lower
  bound: memory held for less than SAMPLE_S can fall between two readings. The total's peak is
  that of the six read at the same moment, what the device held at once.

Each figure is a service's whole process tree (the ears' recogniser is a child process, and
MemoryMax= counts it too), read from /proc/<pid>/smaps_rollup (`pendant.core.procmem`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import pwd
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from pendant.app.local_broker import LocalBroker, free_port
from pendant.core.procmem import Memory, ProcMemError, command_line, memory, tree, tree_memory
from pendant.setup.provision import Provisioned, provision

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "examples" / "pendant.toml"
SERVICES_DIR = REPO / "services"
RECORDED = REPO.parent / "shared" / "testdata" / "speech-en" / "main"
COMMAND = "set a timer for 5 minutes"

SERVICES = ("ears", "eyes", "body", "link", "web", "pairing")
UNITS = ("eyes", "body", "link", "pairing")  # started first; the ears last, see `measure`
READY_TIMEOUT_S = 120.0
EVENT_TIMEOUT_S = 60.0
SETTLE_S = 5.0
IDLE_SAMPLES = 5
SAMPLE_S = 0.1
CAPTURES = 3
# Silence the ears hear before the command: their READY, settling and the idle readings fit in.
LEAD_SILENCE_S = SETTLE_S + IDLE_SAMPLES + 10.0
TAIL_SILENCE_S = 60.0  # past the captures; the ears stop when the audio ends
RATE_HZ = 16_000


T0 = time.monotonic()


def say(what: str) -> None:
    """Progress, on stderr."""
    print(f"  services [{time.monotonic() - T0:5.1f} s] {what}", file=sys.stderr, flush=True)


def unit_environment(name: str) -> dict[str, str]:
    """The Environment= of service `name`'s unit, less what names the device's own folders
    (LG_WD=/run/pendant-body: a RuntimeDirectory= that is not here)."""
    env: dict[str, str] = {}
    for line in (SERVICES_DIR / f"pendant-{name}.service").read_text().splitlines():
        if line.startswith("Environment="):
            for assignment in shlex.split(line.removeprefix("Environment=")):
                key, _, value = assignment.partition("=")
                if not value.startswith("/run/"):
                    env[key] = value
    return env


def write_silence(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(b"\0\0" * int(seconds * RATE_HZ))
    return path


def command_wav() -> Path:
    """A real recording of a command when ../shared has them, else an espeak-ng one."""
    recorded = RECORDED / f"{COMMAND}.wav"
    if recorded.is_file():
        return recorded
    import speech_sets  # tools/ is on sys.path when run as a script

    cache = REPO / ".cache" / "speech-sets"
    manifest = json.loads(Path(speech_sets.generate(cache)).read_text())
    return cache / next(e["file"] for e in manifest["files"] if e["kind"] == "command")


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string is a TOML basic string for these paths


def write_config(path: Path, prov: Provisioned, home: LocalBroker, wavs: list[Path]) -> Path:
    """The demo home on these brokers; no bus login: each service gets its own as a credential
    (`pendant.app.services.as_service`), the link its home broker's password too."""
    files = ", ".join(toml_str(w) for w in wavs)
    path.write_text(
        DEMO_CONFIG.read_text()
        + "\n".join(
            [
                "",
                "[audio]",
                'source = "wav"',
                f"files = [{files}]",
                "realtime = true",
                "gap_ms = 0",
                "",
                "[bus]",
                f"socket = {toml_str(prov.socket)}",
                "",
                "[link]",
                f"socket = {toml_str(prov.socket)}",
                'host = "127.0.0.1"',
                f"port = {home.port}",
                'username = "link"',
                f"outbox_path = {toml_str(path.parent / 'outbox.sqlite')}",
                "",
            ]
        )
    )
    return path


@dataclass
class Running:
    """One service's process, and the notify socket that plays systemd's part for it."""

    name: str
    proc: subprocess.Popen[bytes]
    notify: socket.socket
    log: Path
    ready: bool = False

    def poll_ready(self) -> bool:
        with contextlib.suppress(BlockingIOError):
            while not self.ready:
                if b"READY=1" in self.notify.recv(4096).split(b"\n"):
                    self.ready = True
        return self.ready

    def failed(self) -> str | None:
        if self.proc.poll() is None:
            return None
        return f"{self.name} exited ({self.proc.returncode}): {self.log.read_text()[-1500:]}"


@dataclass
class Device:
    """The brokers and services of one run, in `root`."""

    root: Path
    prov: Provisioned
    home: LocalBroker
    config: Path
    web_port: int
    running: dict[str, Running] = field(default_factory=dict)

    def credentials(self, name: str) -> Path:
        """The unit's LoadCredential= files for service `name`."""
        folder = self.root / "credentials" / name
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.prov.password_file(name), folder / "bus-password")
        if name == "link":
            shutil.copy(self.home.password_file("link"), folder / "home-password")
        if name == "web":
            conf = self.prov.layout.conf_dir
            for pem in ("server.crt", "server.key", "ca.crt"):
                shutil.copy(conf / pem, folder / pem)
        return folder

    def argv(self, name: str, credentials: Path) -> list[str]:
        """ExecStart= of the unit, with this venv's interpreter and this run's paths."""
        if name == "web":
            return [
                sys.executable, "-m", "pendant.web",
                "--cert", str(credentials / "server.crt"), "--key", str(credentials / "server.key"),
                "--ca", str(credentials / "ca.crt"), "--port", str(self.web_port),
                "--bind", "127.0.0.1", "--bus-socket", str(self.prov.socket),
                "--bus-password-file", str(credentials / "bus-password"),
            ]  # fmt: skip
        script = Path(sys.executable).with_name("pendant")  # the console script the units run
        head = [str(script)] if script.is_file() else [sys.executable, "-m", "pendant"]
        return [*head, "--config", str(self.config), "service", name]

    def start(self, name: str) -> Running:
        credentials = self.credentials(name)
        notify_path = self.root / f"notify-{name}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.setblocking(False)
        state = self.root / "state" / name
        state.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **unit_environment(name),
            "CREDENTIALS_DIRECTORY": str(credentials),
            "NOTIFY_SOCKET": str(notify_path),
            "STATE_DIRECTORY": str(state),
        }
        log = self.root / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self.argv(name, credentials), env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.running[name] = Running(name, proc, notify, log)
        return self.running[name]

    def web_accepts(self) -> bool:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", self.web_port), timeout=0.5).close()
            return True
        return False

    async def until_ready(self, names: tuple[str, ...]) -> None:
        """READY=1 from each (the web server: its port accepts), or RuntimeError."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        waiting = set(names)
        while waiting:
            for name in list(waiting):
                service = self.running[name]
                if problem := service.failed():
                    raise RuntimeError(problem)
                if service.poll_ready() if name != "web" else self.web_accepts():
                    waiting.discard(name)
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s: {sorted(waiting)}")
            await asyncio.sleep(0.1)

    def memory(self) -> dict[str, Memory]:
        """Each service's process tree now."""
        out = {}
        for name, service in self.running.items():
            try:
                out[name] = tree_memory(service.proc.pid)
            except ProcMemError as exc:
                raise RuntimeError(f"{name}: {exc}; {service.failed() or ''}") from None
        return out

    def detail(self) -> None:
        """Each process of each tree now, on stderr (the ears' recogniser is a child)."""
        for name, service in self.running.items():
            for pid in tree(service.proc.pid):
                with contextlib.suppress(ProcMemError):
                    m = memory(pid)
                    argv = command_line(pid)
                    what = " ".join(a for a in argv[1:] if not a.startswith("/"))[:50]
                    say(f"{name:<8} {pid:>7} PSS {m.pss_mb:6.1f} USS {m.uss_mb:6.1f}  {what}")

    def stop(self) -> None:
        for service in self.running.values():
            if service.proc.poll() is None:
                service.proc.terminate()
        for service in self.running.values():
            try:
                service.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.proc.kill()
                service.proc.wait(timeout=30)
            service.notify.close()


@contextlib.contextmanager
def mosquitto(prov: Provisioned) -> Iterator[subprocess.Popen[bytes]]:
    """The device's mosquitto on its rendered config, until its unix socket takes connections."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with (prov.layout.root / "mosquitto.log").open("ab") as err:
        proc = subprocess.Popen([exe, "-c", str(prov.conf)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
                s.connect(str(prov.socket))
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the device's mosquitto did not start")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Sampler:
    """Reads every service's memory every SAMPLE_S, keeping each one's peak and the total's."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.peak: dict[str, Memory] = {}
        self.total_peak = Memory()

    def take(self) -> None:
        now = self.device.memory()
        for name, m in now.items():
            if m.pss_kb > self.peak.get(name, Memory()).pss_kb:
                self.peak[name] = m
        total = sum(now.values(), Memory())
        if total.pss_kb > self.total_peak.pss_kb:
            self.total_peak = total

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(SAMPLE_S)


def web_get(port: int, ca: Path) -> int:
    """GET / from the web server as a phone would, trusting the device's CA."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the certificate names the device, not 127.0.0.1
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", "/")
        return connection.getresponse().status
    finally:
        connection.close()


async def work(device: Device, sampler: Sampler) -> None:
    """The ears hear the command (its intent reaches the home broker), then a paired phone asks
    for captures (each scene reaches the home broker), and a phone loads the app."""
    prov, home = device.prov, device.home
    base = f"pendant/{prov.device_id}"
    async with aiomqtt.Client(
        "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
    ) as viewer:
        await viewer.subscribe(f"{base}/intent/#", qos=1)
        await viewer.subscribe(f"{base}/scene", qos=1)
        messages = viewer.messages

        async def next_on(suffix: str) -> None:
            async for message in messages:
                if str(message.topic).startswith(f"{base}/{suffix}"):
                    return

        async with asyncio.timeout(LEAD_SILENCE_S + EVENT_TIMEOUT_S):
            await next_on("intent/")
        say("the ears heard the command")
        tls = aiomqtt.TLSParameters(ca_certs=str(prov.ca_cert))
        async with aiomqtt.Client(
            "127.0.0.1", prov.settings.tls_port, username="phone-bench",
            password=prov.password("phone-bench"), tls_params=tls, tls_insecure=True,
        ) as phone:  # fmt: skip
            for _ in range(CAPTURES):
                await phone.publish(f"{base}/cmd/capture", b"{}", qos=1)
                async with asyncio.timeout(EVENT_TIMEOUT_S):
                    await next_on("scene")
                say("a capture's scene arrived")
    await asyncio.to_thread(web_get, device.web_port, prov.ca_cert)
    await asyncio.sleep(1.0)


async def measure(root: Path) -> dict[str, Any]:
    me = pwd.getpwuid(os.getuid()).pw_name
    device_id = "pendant-demo"  # the demo config's
    prov = provision(
        root / "device", device_id=device_id, add_phones=("bench",), tls_port=free_port(),
        ws_port=free_port(), bind_address="127.0.0.1", run_as=me,
    )  # fmt: skip
    wavs = [
        write_silence(root / "lead.wav", LEAD_SILENCE_S),
        command_wav(),
        write_silence(root / "tail.wav", TAIL_SILENCE_S),
    ]
    with mosquitto(prov), LocalBroker(users=("link", "viewer"), tcp=True) as home:
        config = write_config(root / "pendant.toml", prov, home, wavs)
        device = Device(root, prov, home, config, free_port())
        try:
            for name in (*UNITS, "web"):
                device.start(name)
            await device.until_ready((*UNITS, "web"))
            say("all but the ears READY")
            # The ears last: their audio starts at READY, and the lead silence is timed from it.
            device.start("ears")
            await device.until_ready(("ears",))
            say("all six READY")
            await asyncio.sleep(SETTLE_S)
            readings = []
            for _ in range(IDLE_SAMPLES):
                readings.append(device.memory())
                await asyncio.sleep(1.0)
            say("idle read")
            device.detail()
            sampler = Sampler(device)
            task = asyncio.create_task(sampler.run())
            try:
                await work(device, sampler)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            sampler.take()
        except BaseException:
            for service in device.running.values():
                print(f"--- {service.name}:\n{service.log.read_text()[-1500:]}", file=sys.stderr)
            raise
        finally:
            device.stop()
    return figures(readings, sampler)


def median(readings: list[dict[str, Memory]], name: str) -> Memory:
    def mid(values: list[int]) -> int:
        return int(statistics.median(values))

    ms = [r[name] for r in readings]
    return Memory(
        mid([m.rss_kb for m in ms]), mid([m.pss_kb for m in ms]), mid([m.uss_kb for m in ms])
    )


def figures(readings: list[dict[str, Memory]], sampler: Sampler) -> dict[str, Any]:
    idle = {name: median(readings, name) for name in SERVICES}
    total_idle = sum(idle.values(), Memory())
    out: dict[str, Any] = {
        "pss_mb_total_idle": total_idle.pss_mb,
        "pss_mb_total_peak": sampler.total_peak.pss_mb,
        "uss_mb_total_idle": total_idle.uss_mb,
        # What summing RSS would claim: each shared library counted once per process.
        "rss_mb_total_idle": total_idle.rss_mb,
    }
    for name in SERVICES:
        out[f"pss_mb_{name}_idle"] = idle[name].pss_mb
        out[f"uss_mb_{name}_idle"] = idle[name].uss_mb
        out[f"pss_mb_{name}_peak"] = sampler.peak[name].pss_mb
    return out


def table(results: dict[str, Any]) -> str:
    rows = [f"{'service':<9} {'PSS idle':>9} {'USS idle':>9} {'PSS peak':>9}   (MB)"]
    for name in SERVICES:
        idle, uss = results[f"pss_mb_{name}_idle"], results[f"uss_mb_{name}_idle"]
        peak = results[f"pss_mb_{name}_peak"]
        rows.append(f"{name:<9} {idle:>9} {uss:>9} {peak:>9}")
    rows.append(
        f"{'total':<9} {results['pss_mb_total_idle']:>9} {results['uss_mb_total_idle']:>9} "
        f"{results['pss_mb_total_peak']:>9}   (RSS summed at idle: {results['rss_mb_total_idle']})"
    )
    return "\n".join(rows)


async def service_memory() -> dict[str, Any]:
    """Runs the measurement in a scratch root; prints the table; the figures."""
    # A short root: the bus socket's path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="pb-") as d:
        results = await measure(Path(d))
    print(table(results), flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also merge the figures into this JSON file")
    args = parser.parse_args()
    results = asyncio.run(service_memory())
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.is_file() else {}
        args.out.write_text(json.dumps({**old, **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
