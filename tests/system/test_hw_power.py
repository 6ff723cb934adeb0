"""The power model (tools/hw_power.py, hw/power.toml): hours of wear follow from the inputs, the
CPU figures come from what `make bench-arm` writes, and `make bench` gets its wear_hours_*."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import tool

REPO = Path(__file__).resolve().parents[2]


power = tool("hw_power")
bench_arm = tool("bench_arm")

DATA = power.load()
CPU = power.load_cpu()
DAYS = list(DATA["days"])


def hours(data: dict = DATA, cpu=CPU, day: str = "talkative", settings: bool = True) -> float:
    return power.day_hours(data, day, cpu, settings).hours[0]


def changed(path: str, value: object, base: dict = DATA) -> dict:
    """The model's data (or `base`) with one value (a dotted path) replaced."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize("day", DAYS)
def test_the_image_settings_add_hours_and_a_bigger_cell_more(day: str) -> None:
    off, on = hours(day=day, settings=False), hours(day=day)
    assert 0 < off < on
    big = power.day_hours(DATA, day, CPU).hours
    assert big[1] > big[0]  # 5000 mAh outlasts 1200 mAh


@pytest.mark.parametrize(
    ("path", "value", "longer"),
    [
        ("boards.zero2w.idle_w", 0.7, False),
        ("boards.zero2w.busy_w", 2.5, False),
        ("battery.boost_efficiency", 0.95, True),
        ("days.talkative.speech_min_per_h", 30, False),
        ("days.talkative.commands_per_h", 600, False),
        ("settings.hdmi.saves_ma", 40, True),
        ("settings.hdmi.applied", False, False),
        ("wifi.wake_j", 1.0, False),
        ("wifi.keepalive_s", 10, False),
    ],
)
def test_each_input_moves_the_talkative_hours_the_right_way(
    path: str, value: object, longer: bool
) -> None:
    before, after = hours(), hours(changed(path, value))
    assert (after > before) if longer else (after < before), path


@pytest.mark.parametrize(
    ("field", "factor", "day"),
    [
        ("silence_insns_per_min", 100, "silence"),
        ("noise_insns_per_min", 100, "talkative"),
        ("speech_insns_per_min", 2, "talkative"),
    ],
)
def test_costlier_listening_shortens_its_day_only(field: str, factor: float, day: str) -> None:
    costly = replace(CPU, **{field: getattr(CPU, field) * factor})
    assert hours(cpu=costly, day=day) < hours(day=day)
    others = [d for d in DAYS if DATA["days"][d]["listen"] != field and d != day]
    if field != "speech_insns_per_min":
        for other in others:
            assert hours(cpu=costly, day=other) == hours(day=other)


def test_a_days_talk_is_priced_as_talk_and_its_commands_as_the_demo_stream() -> None:
    day = DATA["days"]["talkative"]
    costlier_talk = replace(CPU, talk_insns_per_min=CPU.talk_insns_per_min * 2)
    costlier_commands = replace(CPU, speech_insns_per_min=CPU.speech_insns_per_min * 2)
    assert hours(cpu=costlier_talk) < hours(cpu=costlier_commands) < hours()
    # The talkative day's speech: command_min_per_h at the demo stream's cost, the rest talk's.
    speech, commands = day["speech_min_per_h"] / 60, day["command_min_per_h"] / 60
    quiet = CPU.cores_busy(CPU.noise_insns_per_min)
    assert power.listening_cores(DATA, day, CPU) == pytest.approx(
        (1 - speech) * quiet
        + commands * CPU.cores_busy(CPU.speech_insns_per_min)
        + (speech - commands) * CPU.cores_busy(CPU.talk_insns_per_min)
    )


def test_a_faster_core_lasts_longer_and_captures_cost_hours() -> None:
    assert hours(cpu=replace(CPU, ipc=CPU.ipc * 2)) > hours()
    assert hours(day="read_this") < hours(day="silence")  # the same day, plus 50 captures
    more = changed("days.read_this.captures", 500)
    assert hours(more, day="read_this") < hours(day="read_this")
    # The eyes' cost: bench-arm's count of a capture, or (older figures) x86's time scaled.
    counted = replace(CPU, read_this_insns=5e9)
    assert hours(cpu=replace(counted, read_this_insns=5e10), day="read_this") < hours(
        cpu=counted, day="read_this"
    )
    scaled = replace(CPU, read_this_insns=None)
    slower_eyes = replace(scaled, zero2w_vs_host=CPU.zero2w_vs_host * 10)
    assert hours(cpu=slower_eyes, day="read_this") < hours(cpu=scaled, day="read_this")


def test_the_goal_is_judged_from_the_hours() -> None:
    got = power.goal_hours(DATA, CPU)
    assert got == hours(day=DATA["goal"]["day"])
    assert "not met" in power.goal_text(changed("goal.hours", got + 1), CPU)
    text = power.goal_text(changed("goal.hours", got - 1), CPU)
    assert "not met" not in text and "met" in text


def bench_arm_results(silence_insns: int) -> dict:
    """What tools/bench_arm.py writes, built by its own `figures` from marked work."""
    work = [
        {"what": "decode", "file": "a.wav", "audio_s": 2.0, "insns": 3_000_000_000},
        {"what": "parse", "intent": "HassTurnOn", "insns": 100_000_000},
        {"what": "listen", "kind": "silence", "file": "s.wav", "audio_s": 60.0,
         "insns": silence_insns},
        {"what": "listen", "kind": "noise", "file": "n.wav", "audio_s": 60.0,
         "insns": 150_000_000},
        {"what": "listen", "kind": "speech", "file": "d.wav", "audio_s": 60.0,
         "insns": 30_000_000_000},
        {"what": "listen", "kind": "talk", "file": "t.wav", "audio_s": 120.0,
         "insns": 160_000_000_000},
    ]  # fmt: skip
    return {
        "clock_hz": bench_arm.CLOCK_HZ,
        "ipc_assumed": 0.6,
        "ipc_range": [0.4, 1.0],
        "asr_backend": "hama",
        "host_utterance_cpu_ms_median": 200,
        "figures": bench_arm.figures(work, 0.6, (0.4, 1.0)),
    }


def test_the_cpu_figures_are_read_from_bench_arm_results(tmp_path: Path) -> None:
    path = tmp_path / "bench-arm-results.json"
    results = bench_arm_results(600_000_000)
    path.write_text(json.dumps(results))
    assert power.load_bench_arm(path).read_this_insns is None  # no read part in that run
    results["read_this_capture_insns_zero2w"] = 6_000_000_000
    path.write_text(json.dumps(results))
    cpu = power.load_bench_arm(path)
    # "read this" counted: 6 G at IPC 0.6 and 1 GHz, 10 core-seconds a capture.
    assert power.capture_cpu_s(DATA, cpu) == pytest.approx(10.0)
    assert cpu.silence_insns_per_min == 600_000_000
    assert cpu.speech_insns_per_min == 30_000_000_000
    assert cpu.talk_insns_per_min == 80_000_000_000  # per minute: 160 G over 120 s
    # 3.1 G instructions at IPC 0.6 and 1 GHz: 5167 ms, against 200 ms here.
    assert cpu.zero2w_vs_host == pytest.approx(5167 / 200)
    # Five times the committed silence cost: fewer hours on a quiet day.
    assert hours(cpu=cpu, day="silence") < hours(day="silence")


def test_make_bench_takes_the_bench_arm_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    committed = power.bench_figures()
    if not (REPO / power.BENCH_ARM).is_file():
        assert committed["wear_cpu_source"].startswith("power-cpu.json")
    assert committed["wear_hours_conversation"] == committed["wear_hours_talkative"]
    assert {f"wear_hours_{d}" for d in DAYS} <= set(committed)
    (tmp_path / power.BENCH_ARM).write_text(json.dumps(bench_arm_results(6_000_000_000)))
    local = power.bench_figures()
    assert local["wear_cpu_source"] == power.BENCH_ARM
    assert local["wear_hours_silence"] < committed["wear_hours_silence"]


def test_a_bench_arm_file_without_a_figure_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = bench_arm_results(600_000_000)
    del results["figures"]["listening"]["speech"], results["figures"]["listening"]["talk"]
    path = tmp_path / "bench-arm-results.json"
    path.write_text(json.dumps(results))
    before = power.CPU_DATA.read_text()
    assert power.main(["--bench-arm", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make bench-arm" in err
    assert "speech_insns_per_min" in err and "talk_insns_per_min" in err
    assert power.CPU_DATA.read_text() == before  # nothing written
    path.write_text("{not json")
    assert power.main(["--bench-arm", str(path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_setting_says_what_its_saving_rests_on() -> None:
    for name, setting in DATA["settings"].items():
        assert setting["basis"] in power.BASES, name
        # A saving with nothing measured behind it is modelled as none.
        if setting["basis"] == "none":
            assert setting["saves_ma"] == 0, name
    table = power.settings_table(DATA, CPU)
    assert "measured on a Zero 2 W" in table and "not measured" in table


def test_a_measured_saving_not_applied_is_offered_with_its_hours() -> None:
    data = changed("settings.tv_out.applied", False)
    got = power.goal_hours(data, CPU)
    text = power.goal_text(changed("goal.hours", got + 1, data), CPU)
    assert "not applied yet" in text and "tv" in text.lower()
    assert "not applied yet" not in power.goal_text(changed("goal.hours", got + 1), CPU)
