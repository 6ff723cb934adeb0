"""The pin map (`pendant/data/pins.toml`): which GPIO each part of the body is wired to.

The same file drives the wiring docs, so the code cannot drift from the drawings. It ships
inside the package; a broken one is a bug in the release, reported as a one-line error.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Literal, get_args

from pendant.core.errors import ConfigError

PINS_RESOURCE = "data/pins.toml"

Kind = Literal["input", "pwm", "i2s", "i2c"]
Pull = Literal["up", "down"]

# What the body service drives, and the kind of pin each must be.
BODY_PINS: dict[str, Kind] = {
    "button": "input",
    "mute_switch": "input",
    "led": "pwm",
    "haptic": "pwm",
}


@dataclass(frozen=True)
class PinSpec:
    """One pin of the map: its BCM GPIO, its header pin (1-40), its kind, the part wired to it and
    what for; `pull` for an input."""

    name: str
    gpio: int
    header: int
    kind: Kind
    part: str
    purpose: str
    pull: Pull | None = None


def _spec(name: str, entry: object, source: str) -> PinSpec:
    if not isinstance(entry, dict):
        raise ConfigError(f"{source}: [{name}] is not a table")
    gpio, header, kind = entry.get("gpio"), entry.get("header"), entry.get("kind")
    if not isinstance(gpio, int) or not 0 <= gpio <= 27:
        raise ConfigError(f"{source}: {name}.gpio must be a BCM GPIO number 0-27")
    if not isinstance(header, int) or not 1 <= header <= 40:
        raise ConfigError(f"{source}: {name}.header must be a header pin 1-40")
    if kind not in get_args(Kind):
        raise ConfigError(f"{source}: {name}.kind must be one of {', '.join(get_args(Kind))}")
    pull = entry.get("pull")
    if pull is not None and pull not in get_args(Pull):
        raise ConfigError(f"{source}: {name}.pull must be 'up' or 'down'")
    return PinSpec(
        name=name,
        gpio=gpio,
        header=header,
        kind=kind,
        part=str(entry.get("part", "")),
        purpose=str(entry.get("purpose", "")),
        pull=pull,
    )


def parse_pins(text: str, source: str = f"pendant/{PINS_RESOURCE}") -> dict[str, PinSpec]:
    """The pins of a pins.toml text; ConfigError, naming `source`, for bad TOML, a bad entry, a GPIO
    or header pin used twice, or a body pin missing or of the wrong kind."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    pins = {name: _spec(name, entry, source) for name, entry in data.items()}
    for field in ("gpio", "header"):
        seen: dict[int, str] = {}
        for spec in pins.values():
            value = getattr(spec, field)
            if value in seen:
                raise ConfigError(f"{source}: {seen[value]} and {spec.name} share {field} {value}")
            seen[value] = spec.name
    for name, kind in BODY_PINS.items():
        if name not in pins:
            raise ConfigError(f"{source}: no [{name}] pin")
        if pins[name].kind != kind:
            raise ConfigError(f"{source}: {name} must be a {kind!r} pin")
    return pins


def load_pins() -> dict[str, PinSpec]:
    """The pin map shipped in the package; ConfigError if it is broken (a bug in the release)."""
    text = resources.files("pendant").joinpath(PINS_RESOURCE).read_text(encoding="utf-8")
    return parse_pins(text)
