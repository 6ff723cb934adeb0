"""PiSugar 3 battery board over I2C (address 0x57), read with smbus2.

Register map, from PiSugar's own driver (github.com/PiSugar/pisugar-power-manager-rs,
pisugar-core/src/pisugar3.rs) and the PiSugar 3 wiki page
(github.com/PiSugar/PiSugar/wiki/PiSugar-3-Series):

- 0x2A: battery level, percent, one byte;
- 0x02: global control 1; bit 7 set = external power plugged in, bit 6 set = charging
  allowed. PiSugar's driver calls the battery charging when both are set;
- 0x31-0x37: the RTC, in BCD, UTC: year (20YY), month, day, weekday, hour, minute, second.
  PiSugar's driver reads it at this same address (its `PiSugar3RTC`).

Each read is two single-byte SMBus transfers, well under a millisecond at 100 kHz, so they
run on the event loop instead of a thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pendant.body.battery import GaugeUnavailable, Reading

if TYPE_CHECKING:
    from pendant.core.config import BodyConfig

ADDRESS = 0x57
REG_CTRL1 = 0x02
REG_PERCENT = 0x2A
CTRL1_POWER_PLUGGED = 1 << 7
CTRL1_CHARGING_ALLOWED = 1 << 6
# Year, month, day, weekday, hour, minute, second.
REG_RTC = tuple(range(0x31, 0x38))


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


class PiSugar3:
    """The PiSugar 3's gauge and RTC; GaugeUnavailable at construction without smbus2 or the I2C bus
    (a board missing from the bus shows at the first read)."""

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

    @classmethod
    def from_config(cls, config: BodyConfig) -> PiSugar3:
        """The gauge `body.battery = 'pisugar3'` stands for, on `body.i2c_bus`."""
        return cls(config.i2c_bus)

    def read(self) -> Reading:
        """The level and charging state now; charging is external power plugged in with charging
        allowed, as PiSugar's driver has it. GaugeUnavailable when closed or nothing answers."""
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

    def _rtc_registers(self) -> tuple[int, ...]:
        if self._bus is None:
            raise GaugeUnavailable(f"{self.where}: closed")
        try:
            return tuple(self._bus.read_byte_data(self.address, r) for r in REG_RTC)
        except OSError as exc:
            raise GaugeUnavailable(f"{self.where} does not answer: {exc.strerror}") from None

    def rtc_time(self) -> datetime | None:
        """The board's RTC (never None: the PiSugar 3 has one), read until two readings agree;
        GaugeUnavailable when closed, when it does not answer, or when it holds no valid time."""
        # One register at a time: a second can tick over between two of them, so read until
        # two readings agree (a tick comes at most once in a few milliseconds).
        raw = self._rtc_registers()
        for _ in range(2):
            again = self._rtc_registers()
            if again == raw:
                break
            raw = again
        year, month, day, _weekday, hour, minute, second = (_from_bcd(v) for v in raw)
        try:
            return datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
        except ValueError:
            shown = " ".join(f"{v:02x}" for v in raw)
            raise GaugeUnavailable(f"{self.where}: its RTC holds no valid time ({shown})") from None

    def close(self) -> None:
        """Closes the I2C bus; a read after it raises GaugeUnavailable. Idempotent."""
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.close()
