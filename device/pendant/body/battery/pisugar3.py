"""PiSugar 3 battery board over I2C (address 0x57), read with smbus2.

Register map, from PiSugar's own driver (github.com/PiSugar/pisugar-power-manager-rs,
pisugar-core/src/pisugar3.rs) and the PiSugar 3 wiki page
(github.com/PiSugar/PiSugar/wiki/PiSugar-3-Series):

- 0x2A: battery level, percent, one byte;
- 0x02: global control 1; bit 7 set = external power plugged in, bit 6 set = charging
  allowed. PiSugar's driver calls the battery charging when both are set.

Each read is two single-byte SMBus transfers, well under a millisecond at 100 kHz, so they
run on the event loop instead of a thread.
"""

from __future__ import annotations

from typing import Any

from pendant.body.battery import GaugeUnavailable, Reading

ADDRESS = 0x57
REG_CTRL1 = 0x02
REG_PERCENT = 0x2A
CTRL1_POWER_PLUGGED = 1 << 7
CTRL1_CHARGING_ALLOWED = 1 << 6


class PiSugar3:
    name = "pisugar3"

    def __init__(self, bus: int = 1, address: int = ADDRESS, smbus: Any = None) -> None:
        """`smbus`: an open SMBus-like object (tests); by default /dev/i2c-`bus`."""
        self.address = address
        self.where = f"PiSugar 3 at 0x{address:02x} on /dev/i2c-{bus}"
        if smbus is None:
            try:
                from smbus2 import SMBus
            except ImportError:
                raise GaugeUnavailable("smbus2 is not installed") from None
            try:
                smbus = SMBus(bus)
            except OSError as exc:
                raise GaugeUnavailable(f"cannot open /dev/i2c-{bus}: {exc.strerror}") from None
        self._bus = smbus

    def read(self) -> Reading:
        if self._bus is None:
            raise GaugeUnavailable(f"{self.where}: closed")
        try:
            pct = self._bus.read_byte_data(self.address, REG_PERCENT)
            ctrl1 = self._bus.read_byte_data(self.address, REG_CTRL1)
        except OSError as exc:
            # ENXIO / EREMOTEIO: nothing acknowledges the address.
            raise GaugeUnavailable(f"{self.where} does not answer: {exc.strerror}") from None
        charging = bool(ctrl1 & CTRL1_POWER_PLUGGED) and bool(ctrl1 & CTRL1_CHARGING_ALLOWED)
        return Reading(min(100, max(0, pct)), charging)

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()
