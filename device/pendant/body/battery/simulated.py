"""A battery for simulation and tests: drains from a start level, charges when told to.

A real, registered backend (`body.battery = "simulated"`), drivable from a test like
gpiozero's mock pins: `set_level()`, `set_charging()`, and its RTC with `set_rtc_offset()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pendant.body.battery import Reading

if TYPE_CHECKING:
    from pendant.core.config import BodyConfig


class SimulatedGauge:
    """A battery that drains `drain_pct_per_min` from `start_pct`, or charges at that rate when
    told, as `clock` (monotonic seconds) advances; its RTC follows `wall_clock`."""

    name = "simulated"

    def __init__(
        self,
        start_pct: float = 80.0,
        drain_pct_per_min: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.drain_pct_per_min = drain_pct_per_min
        self._clock = clock
        self._wall_clock = wall_clock
        self._rtc_offset_s: float | None = 0.0
        self._level = float(start_pct)
        self._charging = False
        self._at_s = clock()

    @classmethod
    def from_config(cls, config: BodyConfig) -> SimulatedGauge:
        """The gauge `body.battery = 'simulated'` stands for, from body.simulated_*."""
        return cls(config.simulated_start_pct, config.simulated_drain_pct_per_min)

    def _advance(self) -> None:
        now = self._clock()
        change = self.drain_pct_per_min * (now - self._at_s) / 60
        self._level += change if self._charging else -change
        self._level = min(100.0, max(0.0, self._level))
        self._at_s = now

    def set_level(self, pct: float) -> None:
        """The level is `pct` now (clamped to 0-100); it drains or charges on from there."""
        self._advance()
        self._level = min(100.0, max(0.0, float(pct)))

    def set_charging(self, charging: bool) -> None:
        """From now on it charges (at the drain rate) or drains, and reads say so."""
        self._advance()
        self._charging = charging

    def set_rtc_offset(self, offset_s: float | None) -> None:
        """Make its RTC run `offset_s` ahead of the system clock (behind if negative);
        None: a board without one."""
        self._rtc_offset_s = offset_s

    def read(self) -> Reading:
        """The level now, rounded to a whole percent."""
        self._advance()
        return Reading(round(self._level), self._charging)

    def rtc_time(self) -> datetime | None:
        """The wall clock plus the offset of `set_rtc_offset`, in whole seconds; None when the
        offset is None."""
        if self._rtc_offset_s is None:
            return None
        # Whole seconds, as a real RTC keeps them.
        now_s = int(self._wall_clock() + self._rtc_offset_s)
        return datetime.fromtimestamp(now_s, UTC)

    def close(self) -> None:
        """Nothing to release: there is no device."""
        pass
