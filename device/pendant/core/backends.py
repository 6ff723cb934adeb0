"""Backends: the hardware and model runtimes a setting chooses between, one idiom for all.

Like gpiozero's pin factories and Frigate's detector plugins, each setting that picks a backend
(`audio.source`, `asr.backend`, `eyes.camera`, `eyes.detector.type`, `body.pin_factory`,
`body.battery`) has one `Registry`: its names, each mapped to the `"module:Class"` that
implements it. The tables are data, kept here in `core`, because the config (also `core`) takes
its choices from them and `core` may not import the components; each component's package names
its table (`pendant.eyes.detectors.DETECTORS` is `DETECTORS` below) and builds from it.

Nothing is imported until a backend is asked for, so every package imports on a machine that
has none of the hardware. A registered class says whether its hardware is here with a
classmethod `present()`, which looks (a device node, an installed module, a device list)
without opening anything; `auto` and `pendant doctor` ask it. The class is built with its
component's config (`from_config(section)` where its own constructor takes plain values).
A backend whose module cannot be imported is a `BackendUnavailable` naming what to install;
whether that stops the component or gives way to another backend is the component's choice
(the detectors fall back to the CPU, the battery to no reports, a missing microphone stops).

This module imports only the standard library: the pydantic-free web server may use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pendant.core.errors import BackendUnavailable

AUTO = "auto"


def load(target: str) -> Any:
    """The object a `"module:attr"` string names, importing its module now."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@dataclass(frozen=True)
class Registry(Mapping[str, str]):
    """One setting's backends: a mapping of name -> `"module:Class"`, in the order `auto`
    tries them, with what a backend needs installed when its module will not import."""

    setting: str
    """The config key that chooses, e.g. 'eyes.detector.type': every message names it."""
    backends: Mapping[str, str]
    install: Mapping[str, str] = field(default_factory=dict)
    """Per name, the advice when its module cannot be imported, e.g. 'pip install sounddevice'."""
    fallback: str | None = None
    """With a fallback the setting also takes 'auto': the first backend present, else this one."""

    def __getitem__(self, name: str) -> str:
        return self.backends[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.backends)

    def __len__(self) -> int:
        return len(self.backends)

    @property
    def names(self) -> tuple[str, ...]:
        """The backends' names, in order."""
        return tuple(self.backends)

    @property
    def choices(self) -> tuple[str, ...]:
        """What the config accepts for the setting: the names, and 'auto' first if it has one."""
        return ((AUTO,) if self.fallback else ()) + self.names

    def load(self, name: str) -> Any:
        """The class registered as `name`, its module imported now; BackendUnavailable, naming
        what to install, when it cannot be."""
        try:
            target = self.backends[name]
        except KeyError:
            known = ", ".join(map(repr, self.backends))
            raise BackendUnavailable(
                f"{self.setting}: no backend {name!r} (one of {known})"
            ) from None
        try:
            return load(target)
        except (ImportError, OSError) as exc:  # OSError: a C library missing (PortAudio)
            advice = self.install.get(name)
            raise BackendUnavailable(
                f"{self.setting} {name!r} cannot load ({exc})" + (f": {advice}" if advice else "")
            ) from None

    def present(self) -> list[str]:
        """The names, fallback aside, whose hardware is on this machine, in order. A backend
        whose module will not import is not present; one without `present()` always is."""
        found = []
        for name in self.backends:
            if name == self.fallback:
                continue
            try:
                backend = self.load(name)
            except BackendUnavailable:
                continue
            if is_present(backend):
                found.append(name)
        return found

    def choose(self, wanted: str) -> str:
        """The backend to build for the setting's value: `wanted` itself, or for 'auto' the
        first present one, else the fallback."""
        if wanted != AUTO:
            return wanted
        if self.fallback is None:
            raise BackendUnavailable(f"{self.setting}: 'auto' is not one of its choices")
        return next(iter(self.present()), self.fallback)


def is_present(backend: Any) -> bool:
    """Whether a loaded backend class says its hardware is here (True if it cannot tell)."""
    present = getattr(backend, "present", None)
    return bool(present()) if present is not None else True


# --- the tables --------------------------------------------------------------------------------
# Data only: a name here is a choice in the config (and its reference docs) at once.

AUDIO_SOURCES = Registry(
    "audio.source",
    {"mic": "pendant.ears.audio.mic:MicSource", "wav": "pendant.ears.audio.wav:WavSource"},
    install={"mic": "apt install libportaudio2 && pip install sounddevice"},
)

RECOGNIZERS = Registry(
    "asr.backend",
    {
        "pocketsphinx": "pendant.ears.asr.pocketsphinx_backend:PocketsphinxRecognizer",
        "whisper": "pendant.ears.asr.whisper_backend:WhisperRecognizer",
        "hama": "pendant.ears.asr.hama_backend:HamaRecognizer",
    },
    # pocketsphinx and hama are the pendant's own dependencies: missing, the install is broken.
    install={
        "pocketsphinx": "reinstall the pendant (pip install pocketsphinx)",
        "whisper": "pip install 'pendant[whisper]'",
        "hama": "reinstall the pendant (pip install hama==1.7.0)",
    },
)

CAMERAS = Registry(
    "eyes.camera",
    {"picamera2": "pendant.eyes.camera:PiCamera", "files": "pendant.eyes.camera:FileCamera"},
)

DETECTORS = Registry(
    "eyes.detector.type",
    {
        "cpu": "pendant.eyes.detectors.cpu:CpuDetector",
        "hailo": "pendant.eyes.detectors.hailo:HailoDetector",
        "coral": "pendant.eyes.detectors.coral:CoralDetector",
        "imx500": "pendant.eyes.detectors.imx500:Imx500Detector",
    },
    fallback="cpu",
)

PIN_FACTORIES = Registry(
    "body.pin_factory",
    # gpiozero's factories, made ready by a function each (lgpio needs a working directory).
    {"lgpio": "pendant.body.gpio:lgpio_factory", "mock": "pendant.body.gpio:mock_factory"},
)

GAUGES = Registry(
    "body.battery",
    {
        "pisugar3": "pendant.body.battery.pisugar3:PiSugar3",
        "simulated": "pendant.body.battery.simulated:SimulatedGauge",
    },
)
