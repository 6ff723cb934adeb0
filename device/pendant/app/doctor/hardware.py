"""`pendant doctor`'s hardware, models and install: what this pendant has, and the fix for what
it lacks. A check that cannot run here (no picamera2 on a laptop, say) says so instead of
failing. The hardware checks ask the backends the pendant would use (pendant.core.backends),
never the hardware libraries themselves.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

from pendant.app.doctor.finding import Finding
from pendant.body.battery import GaugeUnavailable, open_gauge
from pendant.core.backends import AUDIO_SOURCES, CAMERAS, DETECTORS
from pendant.core.config import Config
from pendant.core.errors import BackendUnavailable, PendantError


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def check_mic(config: Config) -> Iterator[Finding]:
    """The microphone: the WAV files it plays in simulation, else the capture devices."""
    if config.audio.source == "wav":
        files = config.audio.files
        absent = [f for f in files if not Path(f).is_file()]
        if absent:
            yield Finding("mic", "FAIL", f"simulated: {absent[0]} not found", "fix audio.files")
        else:
            yield Finding("mic", "OK", f"simulated: {len(files)} WAV file(s)")
        return
    try:
        inputs = AUDIO_SOURCES.load("mic").capture_devices()
    except BackendUnavailable as exc:  # sounddevice or PortAudio missing, or PortAudio failing
        advice = AUDIO_SOURCES.install["mic"]
        yield Finding("mic", "FAIL", str(exc).removesuffix(f": {advice}"), advice)
        return
    if not inputs:
        fix = "wire the I2S mic and add hw/config/mic-*.txt to config.txt (see hw/README.md)"
        yield Finding("mic", "FAIL", "no capture device", fix)
        return
    yield Finding("mic", "OK", f"{len(inputs)} capture device(s): {', '.join(inputs[:3])}")


def check_camera(config: Config) -> Iterator[Finding]:
    """The camera: the files it serves in simulation, else what libcamera finds."""
    eyes = config.eyes
    if eyes.camera == "files":
        yield Finding("camera", "OK", "simulated: serves image files")
        return
    try:
        cameras = CAMERAS.load("picamera2").cameras()
    except BackendUnavailable:
        fix = "apt install python3-picamera2 (Raspberry Pi OS), venv with --system-site-packages"
        yield Finding("camera", "FAIL", "picamera2 is not installed", fix)
        return
    except PendantError as exc:  # the camera's CameraError: libcamera failed
        yield Finding("camera", "FAIL", str(exc), "check the ribbon cable")
        return
    if not cameras:
        fix = "seat the ribbon cable; camera_auto_detect=1 in config.txt"
        yield Finding("camera", "FAIL", "libcamera finds no camera", fix)
        return
    yield Finding("camera", "OK", ", ".join(cameras))


def check_accelerator(config: Config) -> Iterator[Finding]:
    """The detector's accelerators: which are here, and whether the configured one is."""
    present = DETECTORS.present()
    wanted = config.eyes.detector.type
    if wanted in DETECTORS.names and wanted != DETECTORS.fallback and wanted not in present:
        where = ", ".join(DETECTORS.load(wanted).device_paths)
        fix = f"connect the {wanted} and install its runtime, or set eyes.detector.type = 'cpu'"
        yield Finding("accelerator", "WARN", f"{wanted} configured but absent ({where})", fix)
        return
    if present:
        yield Finding("accelerator", "OK", ", ".join(present))
    else:
        yield Finding("accelerator", "OK", "none (the CPU runs the detector)")


def check_gpio(config: Config) -> Iterator[Finding]:
    """The GPIO chip for lgpio: there, lgpio installed, and open to this user."""
    body = config.body
    if body.pin_factory == "mock":
        yield Finding("gpio", "OK", "simulated: gpiozero mock pins")
        return
    chips = sorted(glob.glob("/dev/gpiochip*"))
    if not chips:
        yield Finding("gpio", "FAIL", "no /dev/gpiochip*", "run on a Raspberry Pi")
        return
    if not _has_module("lgpio"):
        yield Finding("gpio", "FAIL", "lgpio is not installed", "apt install python3-lgpio")
        return
    unusable = [c for c in chips if not os.access(c, os.R_OK | os.W_OK)]
    if len(unusable) == len(chips):
        fix = "run as a member of group gpio (pendant-body.service does)"
        yield Finding("gpio", "WARN", f"{chips[0]}: no access for this user", fix)
        return
    yield Finding("gpio", "OK", ", ".join(chips))


def check_battery(config: Config) -> Iterator[Finding]:
    """The battery gauge, read once."""
    try:
        gauge = open_gauge(config.body)
        try:
            reading = gauge.read()
        finally:
            gauge.close()
    except (GaugeUnavailable, ImportError, OSError) as exc:
        fix = f"dtparam=i2c_arm=on in config.txt; PiSugar 3 on /dev/i2c-{config.body.i2c_bus}"
        yield Finding("battery", "FAIL", f"{config.body.battery}: {exc}", fix)
        return
    state = "charging" if reading.charging else "on battery"
    yield Finding("battery", "OK", f"{config.body.battery}: {reading.pct}%, {state}")


def check_models(config: Config) -> Iterator[Finding]:
    """Every model of the manifest: fetched and verified, or needed by this config and not."""
    from pendant.core.model_cache import load_manifest, verify
    from pendant.eyes import OCR_MODEL
    from pendant.eyes.detectors.cpu import DEFAULT_MODEL

    detector = config.eyes.detector.model
    manifest = load_manifest()
    needed = {"silero-vad", "retinaface", OCR_MODEL}
    needed.add(detector if detector in manifest else DEFAULT_MODEL)
    if config.asr.backend == "whisper":
        needed.add("whisper-base")
    for name, spec in sorted(manifest.items()):
        try:
            verify(config, name)
        except PendantError as exc:
            if name in needed:
                yield Finding(
                    "model", "FAIL", str(exc).split(": ", 1)[0], f"pendant models fetch {name}"
                )
            else:
                yield Finding("model", "OK", f"{name}: not fetched (this config does not use it)")
            continue
        digest = spec.files[0].sha256[:12]
        yield Finding("model", "OK", f"{name}: {len(spec.files)} file(s), sha256 {digest}… ok")


def check_install(config: Config) -> Iterator[Finding]:
    """The lock this install came from, so a report names exactly what runs."""
    from pendant.app.build_info import collect

    info = collect()
    if info.lock_sha256 is None:
        yield Finding("install", "WARN", f"pendant {info.version}: lock unknown",
                      "install from the .deb or a checkout with uv.lock")  # fmt: skip
    else:
        yield Finding("install", "OK", f"pendant {info.version}, lock {info.lock_sha256[:16]}…")
    deciding = ", ".join(f"{n} {v}" for n, v in info.packages.items() if v)
    yield Finding("install", "OK", deciding)
