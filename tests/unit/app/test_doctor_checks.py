"""`pendant doctor`'s checks fed fixed readings: a check that raises, the clock, power, and the
README's example lines. On this machine, with real brokers, it is
tests/integration/test_doctor.py's."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from pendant.app.doctor import Finding, diagnose
from pendant.app.doctor.brokers import Login, link_state, refused
from pendant.app.doctor.clock import BUILD_FLOOR, built_at, check_clock, ntp_synchronised, span
from pendant.app.doctor.power import check_power, decode_throttled, read_throttled
from pendant.body.battery.simulated import SimulatedGauge
from pendant.core.config import Config
from tests.conftest import REPO


def test_a_check_that_raises_is_one_line_and_the_round_goes_on() -> None:
    def check_broken(config: Config) -> Iterator[Finding]:
        yield Finding("broken", "OK", "first")
        raise RuntimeError("boom\nsecond line")

    def check_after(config: Config) -> Iterator[Finding]:
        yield Finding("after", "OK", "still checked")

    found = list(diagnose(Config(), (check_broken, check_after)))
    assert [f.part for f in found] == ["broken", "broken", "after"]
    assert found[1].verdict == "WARN" and "boom" in found[1].detail
    assert "\n" not in found[1].line()


# --- the clock -------------------------------------------------------------------------------


def _clock_lines(
    when: datetime,
    synced: bool | None = True,
    gauge: SimulatedGauge | None = None,
) -> list[Finding]:
    gauge = gauge or SimulatedGauge(wall_clock=when.timestamp)
    return list(check_clock(Config(), wall=when.timestamp, synchronised=lambda: synced,
                            gauge=gauge))  # fmt: skip


def test_a_clock_before_the_build_or_in_1970_fails() -> None:
    for when in (datetime(1970, 1, 1, tzinfo=UTC), BUILD_FLOOR.replace(year=2024)):
        first = _clock_lines(when)[0]
        assert first.verdict == "FAIL" and "before this software was built" in first.detail
        assert "NTP" in first.fix
    now = datetime.now(UTC)
    assert built_at() <= now
    first = _clock_lines(now)[0]
    assert first.verdict == "OK" and f"{now:%Y-%m-%d}" in first.detail


def test_the_build_date_is_the_latest_file(tmp_path: Path) -> None:
    late = tmp_path / "late"
    late.write_text("")
    os.utime(late, (2_000_000_000, 2_000_000_000))  # 2033
    assert built_at((tmp_path / "absent", late)) == datetime.fromtimestamp(2_000_000_000, UTC)
    assert built_at((tmp_path / "absent",)) == BUILD_FLOOR


def test_ntp_is_ok_warned_or_unknown_never_failed() -> None:
    now = datetime.now(UTC)
    verdicts = {synced: _clock_lines(now, synced)[1] for synced in (True, False, None)}
    assert verdicts[True].verdict == "OK" and "NTP-synchronised" in verdicts[True].detail
    assert verdicts[False].verdict == "WARN" and "not NTP-synchronised" in verdicts[False].detail
    assert verdicts[None].verdict == "OK" and "unknown" in verdicts[None].detail


@pytest.mark.parametrize(
    ("stdout", "rc", "expected"), [("yes\n", 0, True), ("no\n", 0, False), ("", 1, None)]
)
def test_timedatectl_is_read_and_its_absence_is_unknown(
    monkeypatch: pytest.MonkeyPatch, stdout: str, rc: int, expected: bool | None
) -> None:
    asked: list[list[str]] = []

    def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        asked.append(cmd)
        return subprocess.CompletedProcess(cmd, rc, stdout, "")

    monkeypatch.setattr("pendant.app.doctor.finding.shutil.which", lambda name: f"/usr/bin/{name}")
    assert ntp_synchronised(run) is expected
    assert asked[0][1:] == ["show", "-p", "NTPSynchronized", "--value"]
    monkeypatch.setattr("pendant.app.doctor.finding.shutil.which", lambda name: None)
    assert ntp_synchronised(run) is None


def test_the_rtc_is_compared_through_the_battery_backend() -> None:
    now = datetime.now(UTC)
    gauge = SimulatedGauge(wall_clock=now.timestamp)
    assert _clock_lines(now, gauge=gauge)[2].verdict == "OK"

    gauge.set_rtc_offset(-2 * 3600)
    rtc = _clock_lines(now, synced=True, gauge=gauge)[2]
    assert rtc.verdict == "WARN" and "2 h behind the system clock" in rtc.detail
    assert "the RTC is off" in rtc.fix
    rtc = _clock_lines(now, synced=False, gauge=gauge)[2]
    assert "one of them is wrong" in rtc.fix

    gauge.set_rtc_offset(3 * 86_400)
    assert "3 days ahead of" in _clock_lines(now, gauge=gauge)[2].detail

    gauge.set_rtc_offset(None)
    rtc = _clock_lines(now, gauge=gauge)[2]
    assert rtc.verdict == "OK" and "no RTC" in rtc.detail


def test_spans_read_as_people_say_them() -> None:
    assert [span(s) for s in (7, 119, 300, 7200, 200 * 86_400)] == [
        "7 s", "119 s", "5 min", "2 h", "200 days"
    ]  # fmt: skip


# --- power -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "now", "since_boot"),
    [
        (0x0, (), ()),
        (0x50005, ("under-voltage", "throttled"), ("under-voltage", "throttled")),
        (0x50000, (), ("under-voltage", "throttled")),
        (0x20002, ("ARM frequency capped",), ("ARM frequency capped",)),
        (0xE0008, ("soft temperature limit",),
         ("ARM frequency capped", "throttled", "soft temperature limit")),
    ],
)  # fmt: skip
def test_throttled_bits_in_words(
    value: int, now: tuple[str, ...], since_boot: tuple[str, ...]
) -> None:
    state = decode_throttled(value)
    assert state.now == now
    assert state.since_boot == since_boot


@pytest.mark.parametrize(
    ("value", "verdict", "words"),
    [
        (0x50005, "FAIL", "now: under-voltage, throttled; since boot: under-voltage, throttled"),
        (0x50000, "WARN", "since boot: under-voltage, throttled"),
        (0x80008, "WARN", "now: soft temperature limit"),
        (0x0, "OK", "no under-voltage or throttling since boot"),
    ],
)
def test_power_verdicts(value: int, verdict: str, words: str) -> None:
    (found,) = check_power(Config(), read=lambda: (value, "vcgencmd get_throttled"))
    assert found.verdict == verdict and words in found.detail
    if verdict != "OK":
        assert found.fix


def test_off_a_pi_throttling_is_skipped() -> None:
    (found,) = check_power(Config(), read=lambda: None)
    assert found.verdict == "OK" and found.detail == "not a Raspberry Pi: skipped"


def test_throttling_is_read_from_vcgencmd_then_the_firmware_file_then_hwmon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vcgencmd(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 0, "throttled=0x50005\n", "")

    firmware = tmp_path / "get_throttled"
    hwmon = tmp_path / "hwmon"
    (hwmon / "hwmon0").mkdir(parents=True)
    (hwmon / "hwmon0" / "name").write_text("cpu_thermal\n")
    monkeypatch.setattr("pendant.app.doctor.finding.shutil.which", lambda name: None)
    assert read_throttled(vcgencmd, firmware, hwmon) is None

    (hwmon / "hwmon1").mkdir()
    (hwmon / "hwmon1" / "name").write_text("rpi_volt\n")
    (hwmon / "hwmon1" / "in0_lcrit_alarm").write_text("1\n")
    assert read_throttled(vcgencmd, firmware, hwmon) == (
        0x10000,
        str(hwmon / "hwmon1" / "in0_lcrit_alarm"),
    )

    firmware.write_text("20002\n")
    assert read_throttled(vcgencmd, firmware, hwmon) == (0x20002, str(firmware))

    monkeypatch.setattr("pendant.app.doctor.finding.shutil.which", lambda name: f"/usr/bin/{name}")
    assert read_throttled(vcgencmd, firmware, hwmon) == (0x50005, "vcgencmd get_throttled")


def test_the_readmes_example_lines_are_what_the_doctor_prints() -> None:
    secret = "/etc/pendant/secrets/bridge-remote.password"
    home = Login("home broker", "192.168.1.5:8883", "link.host / link.port", "pendant",
                 "link.username", "link.password_file", secret, lambda: pytest.fail("no login"),
                 home=True)  # fmt: skip
    not_authorised = MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=135))
    (power,) = check_power(Config(), read=lambda: (0x50000, "vcgencmd get_throttled"))
    readme = REPO.joinpath("README.md").read_text()
    for finding in (
        refused(home, not_authorised),
        link_state(home, "pendant/pendant-1/availability", b"offline"),
        power,
    ):
        assert finding.line() in readme
