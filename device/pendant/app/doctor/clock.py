"""`pendant doctor`'s clock: is the time right, and what says so.

The time matters more than it seems: a clock before the home broker's certificate was issued
fails every TLS handshake, and the link drops intents that look older than
link.intent_expiry_s by the wall clock (`pendant.link.outbox`), so a clock stepped by hours drops
them
or lets stale ones through. A Pi has no RTC of its own; NTP sets the clock once the network is
up. A PiSugar 3 keeps one, read here through the battery backend (`Gauge.rtc_time`) and only
compared: nothing in the pendant sets the system clock from it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pendant
from pendant.app import build_info
from pendant.app.doctor.finding import Finding, Run, tool_output
from pendant.body.battery import Gauge, GaugeUnavailable, open_gauge
from pendant.core.config import Config

# No build of this package is older: a clock before it is wrong whatever the files say.
BUILD_FLOOR = datetime(2025, 1, 1, tzinfo=UTC)
# The RTC counts whole seconds and is read over I2C a register at a time.
RTC_TOLERANCE_S = 5
TIMEDATECTL_TIMEOUT_S = 3.0


def built_at(files: tuple[Path, ...] | None = None) -> datetime:
    """No earlier than this software was built: the latest of BUILD_FLOOR and the dates of the
    package's files and of the .deb's build-info.json (whichever exist)."""
    if files is None:
        files = (Path(pendant.__file__), build_info.INSTALLED)
    dates = [BUILD_FLOOR]
    for path in files:
        try:
            dates.append(datetime.fromtimestamp(path.stat().st_mtime, UTC))
        except OSError:
            continue
    return max(dates)


def ntp_synchronised(run: Run = subprocess.run) -> bool | None:
    """systemd's word on it (`timedatectl`); None where there is no systemd to ask ("System
    has not been booted with systemd", no D-Bus)."""
    said = tool_output(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                       TIMEDATECTL_TIMEOUT_S, run)  # fmt: skip
    return {"yes": True, "no": False}.get(said or "")


def span(seconds: float) -> str:
    """A duration as people say it: 40 s, 12 min, 3 h, 200 days."""
    for unit_s, unit in ((86_400, "days"), (3600, "h"), (60, "min")):
        if seconds >= 2 * unit_s:
            return f"{seconds / unit_s:.0f} {unit}"
    return f"{seconds:.0f} s"


def _rtc(
    config: Config, gauge: Gauge | None, wall: Callable[[], float], synced: bool | None
) -> Finding:
    battery = config.body.battery
    name = "PiSugar RTC" if battery == "pisugar3" else f"RTC ({battery} battery)"
    own = gauge is None
    try:
        if gauge is None:
            gauge = open_gauge(config.body)
        try:
            rtc = gauge.rtc_time()
            now_s = wall()
        finally:
            if own:
                gauge.close()
    except (GaugeUnavailable, ImportError, OSError) as exc:
        return Finding("clock", "WARN", f"{name}: not read: {exc}", "see the battery line")
    if rtc is None:
        return Finding("clock", "OK", f"no RTC on this battery board (body.battery = {battery!r})")
    off_s = rtc.timestamp() - now_s
    if abs(off_s) <= RTC_TOLERANCE_S:
        return Finding(
            "clock", "OK", f"{name} agrees with the system clock (within {RTC_TOLERANCE_S} s)"
        )
    direction = "ahead of" if off_s > 0 else "behind"
    detail = (
        f"{name} says {rtc:%Y-%m-%d %H:%M:%S} UTC, {span(abs(off_s))} {direction} the system clock"
    )
    if synced:
        fix = (
            "the system clock is NTP-synchronised, so the RTC is off; the pendant neither "
            "reads nor sets it (PiSugar's own tools can set it)"
        )
    else:
        fix = "one of them is wrong: connect to a network so NTP sets the system clock"
    return Finding("clock", "WARN", detail, fix)


def check_clock(
    config: Config,
    *,
    wall: Callable[[], float] = time.time,
    synchronised: Callable[[], bool | None] = ntp_synchronised,
    gauge: Gauge | None = None,
) -> Iterator[Finding]:
    """The system time against the build date, NTP, and the battery board's RTC. `gauge`:
    the battery backend to read the RTC from (default: the configured one, opened here)."""
    now = datetime.fromtimestamp(wall(), UTC)
    floor = built_at()
    if now < floor:
        yield Finding(
            "clock",
            "FAIL",
            f"system time {now:%Y-%m-%d %H:%M} UTC is before this "
            f"software was built ({floor:%Y-%m-%d}): TLS certificates are not valid yet "
            "and events carry wrong times",
            "connect to a network so NTP sets it (timedatectl)",
        )
    else:
        yield Finding("clock", "OK", f"system time {now:%Y-%m-%d %H:%M:%S} UTC")
    synced = synchronised()
    if synced is None:
        yield Finding("clock", "OK", "NTP synchronisation unknown (no systemd to ask here)")
    elif synced:
        yield Finding("clock", "OK", "NTP-synchronised")
    else:
        yield Finding(
            "clock",
            "WARN",
            "not NTP-synchronised (yet)",
            "check the network; timedatectl timesync-status",
        )
    yield _rtc(config, gauge, wall, synced)
