"""The body's parts as gpiozero devices on one pin factory: button, mute switch, LED, motor.

gpiozero calls `when_pressed` and friends on its own threads (lgpio's callback thread on the
Pi; the caller's thread for mock pins). Those callbacks only stamp the time and hand an
`Edge` to the event loop with `call_soon_threadsafe`; everything else happens on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pendant.body.pins import PinSpec
from pendant.core.errors import BackendUnavailable

log = logging.getLogger(__name__)

# Long enough to hide a tactile switch's contact bounce, short enough not to eat a fast
# double press.
BOUNCE_S = 0.02

Source = Literal["button", "switch"]


@dataclass(frozen=True)
class Edge:
    """A debounced change of an input: `active` is pressed (button) or muted (switch)."""

    source: Source
    active: bool
    at_s: float  # time.monotonic() when gpiozero reported it


class BodyHardware:
    """Context manager; `close()` is idempotent and releases the pins for a restart."""

    def __init__(self, factory: Any, pins: dict[str, PinSpec]) -> None:
        from gpiozero import PWMLED, Button, DigitalInputDevice, GPIOZeroError, PWMOutputDevice

        self.factory = factory
        self._devices: list[Any] = []

        def make(name: str, cls: type, **kwargs: Any) -> Any:
            spec = pins[name]
            try:
                device = cls(spec.gpio, pin_factory=factory, **kwargs)
            except GPIOZeroError as exc:
                raise BackendUnavailable(f"GPIO: {name} on GPIO{spec.gpio}: {exc}") from None
            self._devices.append(device)
            return device

        try:
            # Both inputs short their pin to ground when active (pins.toml: pull = "up").
            self.button = make(
                "button", Button, pull_up=pins["button"].pull != "down", bounce_time=BOUNCE_S
            )
            self.mute_switch = make(
                "mute_switch",
                DigitalInputDevice,
                pull_up=pins["mute_switch"].pull != "down",
                bounce_time=BOUNCE_S,
            )
            self.led = make("led", PWMLED)
            self.motor = make("haptic", PWMOutputDevice)
        except BaseException:
            self.close()
            raise

    @property
    def hardware_muted(self) -> bool:
        """The mute switch is on, as its pin reads now."""
        return bool(self.mute_switch.is_active)

    def attach(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Edge], None]) -> None:
        """From now on every edge reaches `deliver`, called on `loop`."""

        def on(source: Source, active: bool) -> Callable[[], None]:
            def callback() -> None:
                edge = Edge(source, active, time.monotonic())
                # A late callback after the loop closed has nobody left to tell.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(deliver, edge)

            return callback

        self.button.when_pressed = on("button", True)
        self.button.when_released = on("button", False)
        self.mute_switch.when_activated = on("switch", True)
        self.mute_switch.when_deactivated = on("switch", False)

    def close(self) -> None:
        """Releases the pins, the last opened first; a device that fails to close is logged, and the
        rest are still closed."""
        devices, self._devices = self._devices, []
        for device in reversed(devices):
            try:
                device.close()
            except Exception as exc:  # closing the rest matters more than this one
                log.warning("GPIO: closing %r: %s", device, exc)

    def __enter__(self) -> BodyHardware:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
