"""Compute the pendant's power budget from hw/power.toml and write it into the docs.

    python tools/hw_power.py           # rewrite the power-table blocks in hw/power.md, README
    python tools/hw_power.py --check   # exit 1 if a page's table differs from the data

The table is the same in hw/power.md and hw/README.md (between ``<!-- power-table:start -->``
and ``<!-- power-table:end -->``). See hw/power.toml for the model and every figure's source.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hw_docs import block, md_table, replace_block

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "hw" / "power.toml"
PAGES = (REPO / "hw" / "power.md", REPO / "hw" / "README.md")
BLOCK = "power-table"


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


def rows(data: dict) -> list[Row]:
    battery = data["battery"]
    per = data["peripherals"]
    energy_wh = [
        mah / 1000 * battery["nominal_v"] * battery["usable_fraction"] * battery["boost_efficiency"]
        for mah in battery["capacities_mah"]
    ]
    out = []
    for board in data["boards"].values():
        for state in data["states"].values():
            board_w = board["idle_w"] + state["load"] * (board["busy_w"] - board["idle_w"])
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
                    hours=tuple(wh / total for wh in energy_wh),
                )
            )
    return out


def table(data: dict) -> str:
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
        for r in rows(data)
    ]
    b = data["battery"]
    note = (
        f"\nHours = capacity x {b['nominal_v']} V x {b['usable_fraction']:.0%} usable x "
        f"{b['boost_efficiency']:.0%} boost efficiency / total watts (assumptions: see "
        "hw/power.toml). Computed by tools/hw_power.py from hw/power.toml.\n"
    )
    return md_table(header, body) + note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    want = table(load())
    stale = 0
    for page in PAGES:
        text = page.read_text()
        if block(text, BLOCK) == want:
            continue
        stale += 1
        if args.check:
            print(f"out of date: {page.relative_to(REPO)}")
        else:
            page.write_text(replace_block(text, BLOCK, want))
            print(f"wrote: {page.relative_to(REPO)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
