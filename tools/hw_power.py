"""Compute the pendant's power budget from hw/power.toml and write it into the docs.

    python tools/hw_power.py           # print the days of wear; rewrite the tables in the docs
    python tools/hw_power.py --check   # exit 1 if a page's tables differ from the data
    python tools/hw_power.py --bench-arm bench-arm-results.json   # take a bench-arm run's CPU
                                       # figures into hw/power-cpu.json, then rewrite the docs

The states table is the same in hw/power.md and hw/README.md (between ``<!-- power-table:start
-->`` and ``<!-- power-table:end -->``); the days of wear, the settings and the goal are in
hw/power.md (``power-days``). The CPU figures come from `make bench-arm`, through
hw/power-cpu.json (the committed copy, so the docs do not depend on a file one machine has);
`make bench` reads bench-arm-results.json itself when there is one (`bench_figures`). See
hw/power.toml for the model and every figure's source.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hw_docs import block, md_table, replace_block

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "hw" / "power.toml"
CPU_DATA = REPO / "hw" / "power-cpu.json"
PAGES = (REPO / "hw" / "power.md", REPO / "hw" / "README.md")
BLOCK = "power-table"
DAYS_PAGE = REPO / "hw" / "power.md"
DAYS_BLOCK = "power-days"
BENCH_ARM = "bench-arm-results.json"


class PowerError(Exception):
    """The model cannot be computed; the message names what to fix."""


@dataclass(frozen=True)
class Cpu:
    """The ears' CPU cost on a Zero 2 W, as `make bench-arm` estimates it."""

    source: str
    ipc: float
    clock_hz: float
    silence_insns_per_min: float
    noise_insns_per_min: float
    speech_insns_per_min: float
    # A minute of talk near the wearer (speech that is not a command): what most of a day's
    # speech costs; speech_insns_per_min is the demo stream's, commands.
    talk_insns_per_min: float
    # Zero 2 W time over this machine's CPU time for the same utterances: how bench-arm's
    # estimate scales an x86 figure (the eyes') that bench-arm does not count itself.
    zero2w_vs_host: float
    # One "read this" as the eyes do it, the reader started for it (a capture more than
    # eyes.linger_s after the last): bench-arm's count, or None (older figures) for the
    # x86 time scaled by zero2w_vs_host.
    read_this_insns: float | None = None

    def core_seconds(self, insns: float) -> float:
        """One core's time for `insns`: insns / (IPC x clock)."""
        return insns / (self.ipc * self.clock_hz)

    def cores_busy(self, insns_per_min: float) -> float:
        """How many cores' worth of time `insns_per_min` keeps busy: insns / (IPC x clock)."""
        return insns_per_min / 60 / (self.ipc * self.clock_hz)


_CPU_KEYS = (
    "silence_insns_per_min",
    "noise_insns_per_min",
    "speech_insns_per_min",
    "talk_insns_per_min",
)


def cpu_from(figures: dict[str, Any], source: str) -> Cpu:
    """A Cpu from hw/power-cpu.json's fields (or the same taken from a bench-arm run)."""
    missing = [
        k for k in ("ipc", "clock_hz", *_CPU_KEYS, "utterance_zero2w_ms_median") if k not in figures
    ]
    if "host_utterance_cpu_ms_median" not in figures:
        missing.append("host_utterance_cpu_ms_median")
    if missing:
        raise PowerError(f"{source}: no {', '.join(missing)}: run `make bench-arm` again")
    host = figures["host_utterance_cpu_ms_median"]
    if host <= 0 or figures["ipc"] <= 0:
        raise PowerError(f"{source}: ipc and host_utterance_cpu_ms_median must be positive")
    return Cpu(
        source=source,
        ipc=figures["ipc"],
        clock_hz=figures["clock_hz"],
        silence_insns_per_min=figures["silence_insns_per_min"],
        noise_insns_per_min=figures["noise_insns_per_min"],
        speech_insns_per_min=figures["speech_insns_per_min"],
        zero2w_vs_host=figures["utterance_zero2w_ms_median"] / host,
        read_this_insns=figures.get("read_this_capture_insns"),
        talk_insns_per_min=figures["talk_insns_per_min"],
    )


def figures_from_bench_arm(results: dict[str, Any]) -> dict[str, Any]:
    """hw/power-cpu.json's fields from what tools/bench_arm.py writes."""
    f = results.get("figures", {})
    listening = f.get("listening", {})
    out: dict[str, Any] = {
        "ipc": results.get("ipc_assumed"),
        "ipc_range": results.get("ipc_range"),
        "clock_hz": results.get("clock_hz"),
        "asr_backend": results.get("asr_backend"),
        "utterance_zero2w_ms_median": f.get("utterance_zero2w_ms_median"),
        "host_utterance_cpu_ms_median": results.get("host_utterance_cpu_ms_median"),
    }
    for kind in ("silence", "noise", "speech", "talk"):
        out[f"{kind}_insns_per_min"] = listening.get(kind, {}).get("insns_per_min")
    # "read this" (`make bench-arm`'s read part): the reader's start, the read and the face
    # guard loaded again after it, on the Zero 2 W's core.
    out["read_this_capture_insns"] = results.get("read_this_capture_insns_zero2w")
    return {k: v for k, v in out.items() if v is not None}


def load_cpu(path: Path = CPU_DATA) -> Cpu:
    figures = json.loads(path.read_text())
    return cpu_from(figures, f"{path.name} ({figures.get('source', 'no source given')})")


def load_bench_arm(path: Path) -> Cpu:
    """The CPU figures of a bench-arm run's results file."""
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PowerError(f"{path}: not a bench-arm results file ({exc})") from None
    return cpu_from(figures_from_bench_arm(results), str(path))


@dataclass(frozen=True)
class Row:
    board: str
    state: str
    board_w: float
    peripherals_w: float
    total_w: float
    hours: tuple[float, ...]


def load(path: Path = DATA) -> dict:
    return tomllib.loads(path.read_text())


def energy_wh(data: dict, mah: float) -> float:
    """What a cell of `mah` delivers to the 5 V rail."""
    b = data["battery"]
    return mah / 1000 * b["nominal_v"] * b["usable_fraction"] * b["boost_efficiency"]


def state_load(data: dict, state: dict, cpu: Cpu) -> float:
    """The share of the four cores a state keeps busy: typed (`load`) or from bench-arm."""
    if "cpu" in state:
        return cpu.cores_busy(getattr(cpu, state["cpu"])) / data["cpu"]["cores"]
    return state["load"]


def rows(data: dict, cpu: Cpu | None = None) -> list[Row]:
    cpu = cpu or load_cpu()
    per = data["peripherals"]
    energies = [energy_wh(data, mah) for mah in data["battery"]["capacities_mah"]]
    out = []
    for board in data["boards"].values():
        for state in data["states"].values():
            load = state_load(data, state, cpu)
            board_w = board["idle_w"] + load * (board["busy_w"] - board["idle_w"])
            extra = per["led_w"]
            extra += per["mic_w"] if state["mic"] else 0.0
            extra += per["camera_w"] if state["camera"] else 0.0
            total = board_w + extra
            out.append(
                Row(
                    board=board["name"],
                    state=state["label"],
                    board_w=board_w,
                    peripherals_w=extra,
                    total_w=total,
                    hours=tuple(wh / total for wh in energies),
                )
            )
    return out


def table(data: dict, cpu: Cpu | None = None) -> str:
    caps = data["battery"]["capacities_mah"]
    header = ["board", "state", "board (W)", "peripherals (W)", "total at 5 V (W)"]
    header += [f"hours on {mah} mAh" for mah in caps]
    body = [
        [
            r.board,
            r.state,
            f"{r.board_w:.2f}",
            f"{r.peripherals_w:.3f}",
            f"{r.total_w:.2f}",
            *(f"{h:.1f}" for h in r.hours),
        ]
        for r in rows(data, cpu)
    ]
    b = data["battery"]
    note = (
        f"\nHours = capacity x {b['nominal_v']} V x {b['usable_fraction']:.0%} usable x "
        f"{b['boost_efficiency']:.0%} boost efficiency / total watts (assumptions: see "
        "hw/power.toml). Computed by tools/hw_power.py from hw/power.toml.\n"
    )
    return md_table(header, body) + note


# --------------------------------------------------------------------------- days of wear


@dataclass(frozen=True)
class Day:
    """One kind of day on the Zero 2 W: its average draw, its one-off energy and its hours."""

    key: str
    label: str
    settings: bool
    average_w: float  # all day: board, CPU, peripherals, Wi-Fi wakes
    captures_j: float  # the day's captures, taken from the cell once
    hours: tuple[float, ...]  # one per battery capacity


def zero2w(data: dict) -> dict:
    return data["boards"]["zero2w"]


def core_w(data: dict) -> float:
    """What one busy core adds at the 5 V rail."""
    board = zero2w(data)
    return (board["busy_w"] - board["idle_w"]) / data["cpu"]["cores"]


# What a setting's saving rests on (hw/power.toml, `basis`).
BASES = {
    "zero2w": "measured on a Zero 2 W",
    "other": "measured on another Pi",
    "none": "not measured",
}


def settings_saving_w(data: dict, only: str | None = None, applied: bool = True) -> float:
    """What the applied settings (or just `only`; or, `applied=False`, the ones not applied)
    save against the measured idle, in W."""
    return sum(
        s["saves_ma"] * 5 / 1000
        for key, s in data["settings"].items()
        if s["applied"] is applied and (only is None or key == only)
    )


def wifi_wakes_per_h(data: dict, day: dict) -> float:
    w = data["wifi"]
    return 3600 / w["keepalive_s"] + 3600 / w["battery_report_s"] + day["commands_per_h"]


def capture_cpu_s(data: dict, cpu: Cpu) -> float:
    """One "read this"'s core-seconds on the Zero 2 W: bench-arm's count of the eyes' reader
    (started, reading, loading the face guard again), else the x86 time scaled."""
    if cpu.read_this_insns:
        return cpu.core_seconds(cpu.read_this_insns)
    return data["capture"]["host_ms"] / 1000 * cpu.zero2w_vs_host


def capture_j(data: dict, cpu: Cpu) -> float:
    """One "read this": the camera's energy, then the eyes' work at the Zero 2 W's pace."""
    c = data["capture"]
    return data["peripherals"]["camera_w"] * c["camera_s"] + capture_cpu_s(data, cpu) * core_w(data)


def listening_cores(data: dict, day: dict, cpu: Cpu) -> float:
    """The cores' worth of time an hour of the day's listening keeps busy, on average: the
    commands' minutes (command_min_per_h, none if not given) at the demo stream's cost, the
    rest of the speech at talk's."""
    speech = day["speech_min_per_h"] / 60
    commands = min(speech, day.get("command_min_per_h", 0) / 60)
    quiet = cpu.cores_busy(getattr(cpu, day["listen"]))
    return (
        (1 - speech) * quiet
        + commands * cpu.cores_busy(cpu.speech_insns_per_min)
        + (speech - commands) * cpu.cores_busy(cpu.talk_insns_per_min)
    )


def day_hours(
    data: dict, key: str, cpu: Cpu, settings: bool = True, saving_w: float | None = None
) -> Day:
    """Hours of wear on each capacity: (energy - the captures) / the average draw.
    `saving_w` overrides what the settings save (one setting's share, for its row)."""
    day = data["days"][key]
    per = data["peripherals"]
    saved = (settings_saving_w(data) if settings else 0.0) if saving_w is None else saving_w
    average = (
        zero2w(data)["idle_w"]
        - saved
        + listening_cores(data, day, cpu) * core_w(data)
        + per["mic_w"]
        + per["led_w"]
        + wifi_wakes_per_h(data, day) * data["wifi"]["wake_j"] / 3600
    )
    if average <= 0:
        raise PowerError(f"{key}: the settings save more than the board draws: check saves_ma")
    once = day["captures"] * capture_j(data, cpu)
    hours = tuple(
        max(0.0, (energy_wh(data, mah) * 3600 - once) / average / 3600)
        for mah in data["battery"]["capacities_mah"]
    )
    return Day(key, day["label"], settings, average, once, hours)


def days(data: dict, cpu: Cpu) -> list[Day]:
    return [day_hours(data, key, cpu, on) for key in data["days"] for on in (False, True)]


def goal_hours(data: dict, cpu: Cpu) -> float:
    """The goal's day, with the settings, on the goal's cell."""
    goal = data["goal"]
    day = day_hours(data, goal["day"], cpu)
    return day.hours[data["battery"]["capacities_mah"].index(goal["capacity_mah"])]


def bench_figures(data: dict | None = None, cpu: Cpu | None = None) -> dict[str, float]:
    """What `make bench` records: hours of wear, with the image's settings, on the 1200 mAh
    cell (wear_hours_conversation is the goal's day). CPU figures: bench-arm-results.json in
    this directory or the repository when `make bench-arm` wrote one, else hw/power-cpu.json."""
    data = data or load()
    if cpu is None:
        found = [p for p in (Path(BENCH_ARM), REPO / BENCH_ARM) if p.is_file()]
        cpu = load_bench_arm(found[0]) if found else load_cpu()
    i = data["battery"]["capacities_mah"].index(data["goal"]["capacity_mah"])
    out = {"wear_hours_conversation": round(goal_hours(data, cpu), 2)}
    for key in data["days"]:
        out[f"wear_hours_{key}"] = round(day_hours(data, key, cpu).hours[i], 2)
    out["wear_cpu_source"] = cpu.source  # type: ignore[assignment]
    return out


def days_table(data: dict, cpu: Cpu) -> str:
    caps = data["battery"]["capacities_mah"]
    header = ["day", "image settings", "average draw (W)", "captures (J)"]
    header += [f"hours on {mah} mAh" for mah in caps]
    body = [
        [
            d.label,
            "on" if d.settings else "off",
            f"{d.average_w:.3f}",
            f"{d.captures_j:.0f}",
            *(f"{h:.1f}" for h in d.hours),
        ]
        for d in days(data, cpu)
    ]
    text = md_table(header, body)
    text += (
        "\n" + "\n".join(f"- **{d['label']}**: {d['what']}." for d in data["days"].values()) + "\n"
    )
    return text


def settings_table(data: dict, cpu: Cpu) -> str:
    goal = data["goal"]
    i = data["battery"]["capacities_mah"].index(goal["capacity_mah"])
    none = day_hours(data, goal["day"], cpu, settings=False).hours[i]
    header = [
        "setting",
        "applied",
        "where",
        "saves (mW)",
        f"+hours ({goal['day']}, {goal['capacity_mah']} mAh)",
        "basis",
        "figure",
    ]
    body = []
    for key, s in data["settings"].items():
        alone = settings_saving_w(data, key)
        gained = day_hours(data, goal["day"], cpu, saving_w=alone).hours[i] - none
        src = data["sources"][s["source"]]
        body.append(
            [
                s["label"],
                "yes" if s["applied"] else "no",
                s["where"],
                f"{alone * 1000:.0f}",
                f"{gained:+.2f}",
                BASES[s["basis"]],
                f"{s['estimate']} ([{s['source']}]({src['url']}))" if src["url"] else s["estimate"],
            ]
        )
    return md_table(header, body)


def vad_line(data: dict, cpu: Cpu) -> str:
    quiet = cpu.cores_busy(cpu.silence_insns_per_min)
    wakes = wifi_wakes_per_h(data, data["days"]["silence"])
    return (
        f"The always-on listening (webrtcvad, Silero, the segmenter) in a quiet room: "
        f"{cpu.silence_insns_per_min / 60 / 1e6:.1f} M instructions a second, "
        f"{100 * quiet:.2f} % of one core at IPC {cpu.ipc}, "
        f"{1000 * quiet * core_w(data):.1f} mW; in commands (the demo stream) "
        f"{100 * cpu.cores_busy(cpu.speech_insns_per_min):.0f} % of a core, "
        f"{1000 * cpu.cores_busy(cpu.speech_insns_per_min) * core_w(data):.0f} mW; in talk "
        f"{100 * cpu.cores_busy(cpu.talk_insns_per_min):.0f} % of a core, "
        f"{1000 * cpu.cores_busy(cpu.talk_insns_per_min) * core_w(data):.0f} mW. "
        f'One "read this": {capture_j(data, cpu):.1f} J '
        f"({data['peripherals']['camera_w'] * data['capture']['camera_s']:.1f} J of camera, "
        f"{capture_cpu_s(data, cpu):.1f} core-seconds of eyes, "
        + ("counted by bench-arm" if cpu.read_this_insns else "x86 time scaled")
        + "). "
        f"Wi-Fi wakes on a quiet hour: {wakes:.0f}, "
        f"{1000 * wakes * data['wifi']['wake_j'] / 3600:.2f} mW.\n"
    )


def goal_text(data: dict, cpu: Cpu) -> str:
    goal = data["goal"]
    got = goal_hours(data, cpu)
    day = day_hours(data, goal["day"], cpu)
    verdict = "met" if got >= goal["hours"] else "**not met**"
    text = (
        f"**Goal: >= {goal['hours']:g} h of conversation-mode wear ({goal['day']} day, image "
        f"settings on) on the {goal['capacity_mah']} mAh cell. Estimated: {got:.1f} h: "
        f"{verdict}.**"
    )
    if got >= goal["hours"]:
        return text + "\n"
    need_mah = goal["capacity_mah"] * goal["hours"] / got
    budget_w = energy_wh(data, goal["capacity_mah"]) / goal["hours"]
    no_cpu = replace(
        cpu,
        silence_insns_per_min=0.0,
        noise_insns_per_min=0.0,
        speech_insns_per_min=0.0,
        talk_insns_per_min=0.0,
    )
    floor = day_hours(data, goal["day"], no_cpu).hours[
        data["battery"]["capacities_mah"].index(goal["capacity_mah"])
    ]
    goal_day = data["days"][goal["day"]]
    cpu_w = listening_cores(data, goal_day, cpu) * core_w(data)
    quiet = (1 - goal_day["speech_min_per_h"] / 60) * cpu.cores_busy(
        getattr(cpu, goal_day["listen"])
    )
    quiet_w = quiet * core_w(data)
    rest_w = day.average_w - cpu_w
    lines = [
        text,
        "",
        "What would meet it:",
        f"- **a bigger cell**: {need_mah:.0f} mAh or more at this draw (the PiSugar 3 Plus's "
        f"5000 mAh gives {day.hours[-1]:.0f} h);",
        f"- **the listening's CPU**: it costs {cpu_w * 1000:.0f} mW on this day; with it free "
        f"the day would last {floor:.1f} h: the rest ({rest_w:.3f} W with the settings) is "
        + (
            f"over the {budget_w:.3f} W that {goal['hours']:g} h allows, so the CPU alone "
            "cannot meet it;"
            if rest_w > budget_w
            else f"under the {budget_w:.3f} W that {goal['hours']:g} h allows;"
        ),
        f"  of it, {quiet_w * 1000:.1f} mW is the VAD listening between utterances and "
        f"{(cpu_w - quiet_w) * 1000:.0f} mW the recogniser on the day's speech: the VAD's duty "
        f"cycle or block size (audio.chunk_ms is already webrtcvad's longest, 30 ms) can save "
        f"at most the former;",
        f"- **a faster A53 than assumed**: the listening's CPU scales with 1/IPC; "
        f"{ipc_needed_text(data, cpu)};",
        f"- **a lower idle**: the draw with the settings must come down by "
        f"{(day.average_w - budget_w) * 1000:.0f} mW more (about "
        f"{(day.average_w - budget_w) * 200:.0f} mA at 5 V);",
    ]
    pending = settings_saving_w(data, applied=False)
    if pending > 0:
        names = ", ".join(
            f"{s['label']} ({s['saves_ma']} mA)"
            for s in data["settings"].values()
            if not s["applied"] and s["saves_ma"] > 0
        )
        more = day_hours(data, goal["day"], cpu, saving_w=settings_saving_w(data) + pending)
        i = data["battery"]["capacities_mah"].index(goal["capacity_mah"])
        lines.append(
            f"- **the measured savings not applied yet**: {names} would make it "
            f"{more.hours[i]:.1f} h;"
        )
    lines.append(
        "- only a meter on the pendant itself can say more: each setting's saving was measured "
        "on Raspberry Pi OS (or another Pi), and the Debian image's own idle is not measured."
    )
    return "\n".join(lines) + "\n"


def ipc_needed(data: dict, cpu: Cpu) -> float | None:
    """The A53 IPC at which the goal's day reaches the goal (None: no IPC reaches it)."""
    goal = data["goal"]
    budget_w = energy_wh(data, goal["capacity_mah"]) / goal["hours"]
    day = data["days"][goal["day"]]
    once_w = day["captures"] * capture_j(data, cpu) / 3600 / goal["hours"]
    cpu_w = listening_cores(data, day, cpu) * core_w(data)
    rest_w = day_hours(data, goal["day"], cpu).average_w - cpu_w + once_w
    if rest_w >= budget_w:
        return None
    # cpu_w scales with 1/IPC: cpu_w * ipc / x = budget_w - rest_w.
    return cpu.ipc * cpu_w / (budget_w - rest_w)


def ipc_needed_text(data: dict, cpu: Cpu) -> str:
    need = ipc_needed(data, cpu)
    if need is None:
        return "no IPC would do: the rest of the draw is over the budget already"
    return f"the goal is met at an IPC of {need:.2f} or more (assumed: {cpu.ipc})"


def days_block(data: dict, cpu: Cpu) -> str:
    return (
        days_table(data, cpu)
        + "\n"
        + vad_line(data, cpu)
        + "\nThe image's power settings and what each is modelled to add:\n\n"
        + settings_table(data, cpu)
        + "\n"
        + goal_text(data, cpu)
        + f"\nCPU figures: {cpu.source}. Computed by tools/hw_power.py from hw/power.toml.\n"
    )


def refresh_cpu(path: Path) -> None:
    """hw/power-cpu.json from a bench-arm run's results (checked first)."""
    results = json.loads(path.read_text())
    figures = figures_from_bench_arm(results)
    cpu_from(figures, str(path))  # raises if a figure is missing
    figures = {
        "what": json.loads(CPU_DATA.read_text())["what"],
        "source": f"{path.name}: make bench-arm, {results.get('guest', 'qemu-aarch64')}",
        **figures,
    }
    CPU_DATA.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote: {CPU_DATA.relative_to(REPO)} from {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="only compare, write nothing")
    what.add_argument(
        "--bench-arm",
        type=Path,
        metavar="JSON",
        help="take the CPU figures of this bench-arm-results.json into hw/power-cpu.json",
    )
    args = parser.parse_args(argv)
    try:
        if args.bench_arm:
            refresh_cpu(args.bench_arm)
        data, cpu = load(), load_cpu()
        pages = {page: {BLOCK: table(data, cpu)} for page in PAGES}
        pages[DAYS_PAGE][DAYS_BLOCK] = days_block(data, cpu)
    except (PowerError, OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        print(f"hw_power: error: {exc}", file=sys.stderr)
        return 2
    if not args.check:
        for d in days(data, cpu):
            hours = ", ".join(
                f"{h:.1f} h on {mah} mAh"
                for h, mah in zip(d.hours, data["battery"]["capacities_mah"], strict=True)
            )
            print(f"{d.label:>14} (settings {'on' if d.settings else 'off'}): {hours}")
    stale = 0
    for page, blocks in pages.items():
        text = page.read_text()
        new = text
        for name, want in blocks.items():
            if block(text, name) != want:
                new = replace_block(new, name, want)
        if new == text:
            continue
        stale += 1
        if args.check:
            print(f"out of date: {page.relative_to(REPO)}")
        else:
            page.write_text(new)
            print(f"wrote: {page.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
