"""`pendant doctor`: what this pendant has, and the one-line fix for each piece it lacks.

Each check looks, never changes anything, and finishes in about a second; a check that cannot
run here (no picamera2 on a laptop, say) says so instead of failing. The exit code is 0 when
nothing the config asks for is missing, 1 otherwise, so an image build or a support script can
use it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pendant.config import Config
from pendant.errors import PendantError

Verdict = Literal["ok", "warn", "missing"]
CONNECT_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Finding:
    part: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def line(self) -> str:
        tail = f"  -> {self.fix}" if self.fix and self.verdict != "ok" else ""
        return f"{self.verdict:<7} {self.part:<12} {self.detail}{tail}"


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_mic(config: Config) -> Iterator[Finding]:
    if config.audio.source == "wav":
        files = config.audio.files
        absent = [f for f in files if not Path(f).is_file()]
        if absent:
            yield Finding("mic", "missing", f"simulated: {absent[0]} not found", "fix audio.files")
        else:
            yield Finding("mic", "ok", f"simulated: {len(files)} WAV file(s)")
        return
    if not _has_module("sounddevice"):
        yield Finding("mic", "missing", "sounddevice is not installed", "pip install sounddevice")
        return
    try:
        import sounddevice

        inputs = [d for d in sounddevice.query_devices() if d["max_input_channels"] > 0]
    except OSError as exc:  # PortAudio missing
        yield Finding("mic", "missing", str(exc), "apt install libportaudio2")
        return
    if not inputs:
        fix = "wire the I2S mic and add hw/config/mic-*.txt to config.txt (see hw/README.md)"
        yield Finding("mic", "missing", "no capture device", fix)
        return
    names = ", ".join(d["name"] for d in inputs[:3])
    yield Finding("mic", "ok", f"{len(inputs)} capture device(s): {names}")


def check_camera(config: Config) -> Iterator[Finding]:
    eyes = config.eyes
    if eyes.camera == "files":
        yield Finding("camera", "ok", "simulated: serves image files")
        return
    if not _has_module("picamera2"):
        fix = "apt install python3-picamera2 (Raspberry Pi OS), venv with --system-site-packages"
        yield Finding("camera", "missing", "picamera2 is not installed", fix)
        return
    try:
        from picamera2 import Picamera2  # type: ignore[import-not-found]

        cameras = Picamera2.global_camera_info()
    except Exception as exc:  # libcamera raises a variety of errors when the stack is off
        yield Finding("camera", "missing", f"libcamera: {exc}", "check the ribbon cable")
        return
    if not cameras:
        fix = "seat the ribbon cable; camera_auto_detect=1 in config.txt"
        yield Finding("camera", "missing", "libcamera finds no camera", fix)
        return
    yield Finding("camera", "ok", ", ".join(str(c.get("Model", "?")) for c in cameras))


def check_accelerator(config: Config) -> Iterator[Finding]:
    from pendant.eyes.detectors import ACCELERATORS, DETECTORS, _registry

    if not DETECTORS:
        DETECTORS.update(_registry())
    present = [name for name in ACCELERATORS if DETECTORS[name].present()]
    wanted = config.eyes.detector.type
    if wanted in ACCELERATORS and wanted not in present:
        where = ", ".join(DETECTORS[wanted].device_paths)
        fix = f"connect the {wanted} and install its runtime, or set eyes.detector.type = 'cpu'"
        yield Finding("accelerator", "warn", f"{wanted} configured but absent ({where})", fix)
        return
    if present:
        yield Finding("accelerator", "ok", ", ".join(present))
    else:
        yield Finding("accelerator", "ok", "none (the CPU runs the detector)")


def check_gpio(config: Config) -> Iterator[Finding]:
    body = config.body
    if body.pin_factory == "mock":
        yield Finding("gpio", "ok", "simulated: gpiozero mock pins")
        return
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        yield Finding("gpio", "missing", "no /dev/gpiochip*", "run on a Raspberry Pi")
        return
    if not _has_module("lgpio"):
        yield Finding("gpio", "missing", "lgpio is not installed", "apt install python3-lgpio")
        return
    unusable = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if len(unusable) == len(chips):
        fix = "run as a member of group gpio (pendant-body.service does)"
        yield Finding("gpio", "warn", f"{chips[0]}: no access for this user", fix)
        return
    yield Finding("gpio", "ok", ", ".join(chips))


def check_battery(config: Config) -> Iterator[Finding]:
    from pendant.body.battery import GAUGES, GaugeUnavailable

    try:
        gauge = GAUGES[config.body.battery](config.body)
        try:
            reading = gauge.read()
        finally:
            gauge.close()
    except (GaugeUnavailable, ImportError, OSError) as exc:
        fix = f"dtparam=i2c_arm=on in config.txt; PiSugar 3 on /dev/i2c-{config.body.i2c_bus}"
        yield Finding("battery", "missing", f"{config.body.battery}: {exc}", fix)
        return
    state = "charging" if reading.charging else "on battery"
    yield Finding("battery", "ok", f"{config.body.battery}: {reading.pct}%, {state}")


def check_models(config: Config) -> Iterator[Finding]:
    from pendant.eyes.detectors.cpu import DEFAULT_MODEL
    from pendant.models import load_manifest, verify

    detector = config.eyes.detector.model
    manifest = load_manifest()
    needed = {"silero-vad", "retinaface", "ppocr-v4"}
    needed.add(detector if detector in manifest else DEFAULT_MODEL)
    if config.asr.backend == "whisper":
        needed.add("whisper-base")
    for name, spec in sorted(manifest.items()):
        try:
            verify(config, name)
        except PendantError as exc:
            if name in needed:
                yield Finding(
                    "model", "missing", str(exc).split(": ", 1)[0], f"pendant models fetch {name}"
                )
            else:
                yield Finding("model", "ok", f"{name}: not fetched (this config does not use it)")
            continue
        digest = spec.files[0].sha256[:12]
        yield Finding("model", "ok", f"{name}: {len(spec.files)} file(s), sha256 {digest}… ok")


def check_install(config: Config) -> Iterator[Finding]:
    """The lock this install came from, so a report names exactly what runs."""
    from pendant.build_info import collect

    info = collect()
    if info.lock_sha256 is None:
        yield Finding("install", "warn", f"pendant {info.version}: lock unknown",
                      "install from the .deb or a checkout with uv.lock")  # fmt: skip
    else:
        yield Finding("install", "ok", f"pendant {info.version}, lock {info.lock_sha256[:16]}…")
    deciding = ", ".join(f"{n} {v}" for n, v in info.packages.items() if v)
    yield Finding("install", "ok", deciding)


def _mqtt_reachable(where: str, connect: Callable[[], socket.socket]) -> Finding | None:
    try:
        with connect():
            return None
    except OSError as exc:
        return Finding("broker", "missing", f"{where}: {exc.strerror or exc}", "")


def check_brokers(config: Config) -> Iterator[Finding]:
    def unix(path: str) -> Callable[[], socket.socket]:
        def connect() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(CONNECT_TIMEOUT_S)
            try:
                s.connect(path)
            except OSError:
                s.close()
                raise
            return s

        return connect

    def tcp(host: str, port: int) -> Callable[[], socket.socket]:
        return lambda: socket.create_connection((host, port), CONNECT_TIMEOUT_S)

    bus, link = config.bus, config.link
    checks = [
        ("bus", bus.socket or f"{bus.host}:{bus.port}", "systemctl start mosquitto",
         unix(bus.socket) if bus.socket else tcp(bus.host, bus.port)),
    ]  # fmt: skip
    if link.socket:
        checks.append(("phones", link.socket, "systemctl start mosquitto", unix(link.socket)))
    if link.home_host is not None:
        checks.append(("home", f"{link.home_host}:{link.broker_port}",
                       "check link.host / link.port and the network",
                       tcp(link.home_host, link.broker_port)))  # fmt: skip
    for name, where, fix, connect in checks:
        failed = _mqtt_reachable(where, connect)
        if failed is None:
            yield Finding("broker", "ok", f"{name}: {where} answers")
        else:
            yield Finding("broker", failed.verdict, f"{name}: {failed.detail}", fix)


CHECKS: tuple[Callable[[Config], Iterator[Finding]], ...] = (
    check_install,
    check_mic,
    check_camera,
    check_accelerator,
    check_gpio,
    check_battery,
    check_models,
    check_brokers,
)


def diagnose(config: Config) -> list[Finding]:
    findings: list[Finding] = []
    for check in CHECKS:
        try:
            findings.extend(check(config))
        except Exception as exc:  # a doctor must finish its round whatever one check does
            part = check.__name__.removeprefix("check_")
            findings.append(Finding(part, "warn", f"check failed: {exc}", "report this"))
    return findings


def main(config: Config) -> int:
    findings = diagnose(config)
    for finding in findings:
        print(finding.line())
    return 1 if any(f.verdict == "missing" for f in findings) else 0
