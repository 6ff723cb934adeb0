"""The battery gauge: one small interface, one file per backend, chosen by `body.battery`.

`GAUGES` (its table is in pendant.core.backends) names each backend's `"module:Class"`,
imported when chosen and built with `from_config(body)`.

A gauge that is configured but absent (no PiSugar on the I2C bus, no I2C at all) is not a
reason to stop the button and the LED: the body warns once and sends no battery reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pendant.core.backends import GAUGES
from pendant.core.config import BodyConfig
from pendant.core.errors import BackendUnavailable, PendantError

log = logging.getLogger(__name__)


class GaugeUnavailable(PendantError, OSError):
    """The configured gauge cannot be read (missing device, driver or permission)."""


@dataclass(frozen=True)
class Reading:
    """One reading of the gauge: the charge in percent (0-100), and whether it is charging."""

    pct: int
    charging: bool


class Gauge(Protocol):
    """What every battery backend provides (`name`: its value of `body.battery`)."""

    name: str

    def read(self) -> Reading:
        """The level now; GaugeUnavailable when the device does not answer."""
        ...

    def rtc_time(self) -> datetime | None:
        """The battery board's real-time clock (UTC, whole seconds), None if it has none;
        GaugeUnavailable when it does not answer or holds no valid time."""
        ...

    def close(self) -> None:
        """Releases the device (the I2C bus); the gauge is not read after it."""
        ...


def open_gauge(config: BodyConfig) -> Gauge:
    """The configured gauge, unread; GaugeUnavailable (or BackendUnavailable) if it cannot be."""
    gauge: Gauge = GAUGES.load(config.battery).from_config(config)
    return gauge


def create_gauge(config: BodyConfig) -> Gauge | None:
    """The configured gauge, checked with one reading; None (and one warning) if absent."""
    try:
        gauge = open_gauge(config)
    except (GaugeUnavailable, BackendUnavailable) as exc:
        log.warning("battery: %s; no battery reports", exc)
        return None
    try:
        gauge.read()
    except GaugeUnavailable as exc:
        gauge.close()
        log.warning("battery: %s; no battery reports", exc)
        return None
    return gauge


class Reporter:
    """When a reading becomes a battery event: on a change, and at least every `every_s`."""

    def __init__(self, low_pct: int, every_s: float) -> None:
        self.low_pct = low_pct
        self.every_s = every_s
        self._last: Reading | None = None
        self._sent_at_s = 0.0

    def due(self, reading: Reading, now_s: float) -> bool:
        """Whether `reading` is to be sent: it differs from the last one sent, or `every_s` have
        passed since that one (`now_s`: monotonic seconds). True also records it as sent."""
        if reading != self._last or now_s - self._sent_at_s >= self.every_s:
            self._last, self._sent_at_s = reading, now_s
            return True
        return False

    def is_low(self, reading: Reading) -> bool:
        """Below `low_pct` (a reading at it is not low)."""
        return reading.pct < self.low_pct
