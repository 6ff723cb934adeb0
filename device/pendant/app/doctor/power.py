"""`pendant doctor`'s power: has the Pi been short of voltage, or slowed down, since it booted.

The firmware keeps this as bits: 0-3 for now, 16-19 for "has happened since boot" (Raspberry
Pi's documentation of `vcgencmd get_throttled`). Under-voltage is the one that does harm: the
SD card can be corrupted and the Pi resets. It is read, in this order, from `vcgencmd
get_throttled` (Raspberry Pi OS), the firmware driver's `get_throttled` file (kernels of the
Raspberry Pi tree) or the `rpi_volt` hwmon's `in0_lcrit_alarm` (mainline kernels, the Debian
image: the under-voltage bit alone). None of them on a machine that is no Raspberry Pi.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pendant.app.doctor.finding import Finding, Run, tool_output
from pendant.core.config import Config

BITS = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}
SINCE_BOOT_SHIFT = 16
UNDER_VOLTAGE = "under-voltage"
FIRMWARE_FILE = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
HWMON_DIR = Path("/sys/class/hwmon")
VCGENCMD_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Throttling:
    """The words (`BITS`) of the bits that hold now, and of those that have held since boot."""

    now: tuple[str, ...]
    since_boot: tuple[str, ...]


def decode_throttled(value: int) -> Throttling:
    """The firmware's bits in words: what holds now, and what has happened since boot."""
    now = tuple(word for bit, word in BITS.items() if value >> bit & 1)
    since = tuple(word for bit, word in BITS.items() if value >> (bit + SINCE_BOOT_SHIFT) & 1)
    return Throttling(now, since)


def _vcgencmd(run: Run) -> int | None:
    # "throttled=0x50005"; it fails without access to /dev/vcio (group video), or off a Pi.
    said = tool_output(["vcgencmd", "get_throttled"], VCGENCMD_TIMEOUT_S, run) or ""
    key, _, value = said.partition("=")
    if key != "throttled":
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def _rpi_volt(hwmon_dir: Path) -> Path | None:
    try:
        for entry in sorted(hwmon_dir.iterdir()):
            if (entry / "name").read_text().strip() == "rpi_volt":
                return entry / "in0_lcrit_alarm"
    except OSError:
        return None
    return None


def read_throttled(
    run: Run = subprocess.run,
    firmware_file: Path = FIRMWARE_FILE,
    hwmon_dir: Path = HWMON_DIR,
) -> tuple[int, str] | None:
    """The firmware's throttled bits and where they came from; None off a Raspberry Pi."""
    value = _vcgencmd(run)
    if value is not None:
        return value, "vcgencmd get_throttled"
    try:
        return int(firmware_file.read_text().strip(), 16), str(firmware_file)  # "50005\n"
    except (OSError, ValueError):
        pass
    alarm = _rpi_volt(hwmon_dir)
    if alarm is not None:
        try:
            # The driver's alarm is the firmware's sticky under-voltage bit, bit 16.
            return int(alarm.read_text().strip()) << SINCE_BOOT_SHIFT, str(alarm)
        except (OSError, ValueError):
            pass
    return None


def check_power(
    config: Config, *, read: Callable[[], tuple[int, str] | None] = read_throttled
) -> Iterator[Finding]:
    """Under-voltage and throttling, now and since boot."""
    got = read()
    if got is None:
        yield Finding("power", "OK", "not a Raspberry Pi: skipped")
        return
    value, source = got
    state = decode_throttled(value)
    said = []
    if state.now:
        said.append("now: " + ", ".join(state.now))
    if state.since_boot:
        said.append("since boot: " + ", ".join(state.since_boot))
    detail = "; ".join(said) + f" ({source}: 0x{value:x})"
    supply = "a supply and cable that hold 5 V under load; a PiSugar low on charge does it too"
    if UNDER_VOLTAGE in state.now:
        yield Finding("power", "FAIL", detail, supply)
    elif UNDER_VOLTAGE in state.since_boot:
        yield Finding("power", "WARN", detail, supply)
    elif said:
        yield Finding("power", "WARN", detail, "let it cool: the case may need air")
    else:
        yield Finding("power", "OK", f"no under-voltage or throttling since boot ({source})")
