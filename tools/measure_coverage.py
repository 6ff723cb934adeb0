"""How much of what people say to Home Assistant the ears can hear and understand.

    .venv/bin/python tools/measure_coverage.py [../shared/testdata/ha-sentences] [--scope in]

For each of Home Assistant's own test sentences (`en-dev.json`, with that suite's test home,
`home.toml`): is it in the closed set (the only sentences the recogniser can ever output), and
does the NLU give the intent and the slots Home Assistant expects? Prints one line per intent,
then the totals. Text only: this measures the grammar and the NLU, not the acoustic model.

A slot counts as right when the NLU gives the expected key with the same value (names compared
without case, numbers as numbers, a list meaning any of its values); an expected `domain` is
also right when the named device is of that kind. A sentence about "here" gives
`area_context: "here"` and, as `area`, the area Home Assistant last set on
`pendant/<id>/cmd/area` (the ears pass it to the NLU); the test's `context` area stands in for
that here. Slots Home
Assistant takes from the speaker's area for sentences that do not say "here" are expected
too: the column `but ctx` counts the sentences right but for those.

`--scope excluded` and `--scope out` (sentences about things the suite's home in our format
lacks, or intents we did not claim when the set was made) are measured on that home extended
with what the sentences themselves name: floors, binary sensors, persons, valves, vacuums and
media. Those names come from the very sentences measured, so these figures say what the
grammar and the NLU can do with such a home, not how well a home nobody described would do.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pendant.core.config import Config, Floor, HomeDevice, load_config
from pendant.core.names import NAME_PATTERN, normalize
from pendant.ears.understand.grammar import build_grammar
from pendant.ears.understand.nlu import IntentParser

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "testdata" / "ha-sentences"


@dataclass
class Tally:
    sentences: int = 0
    in_closed_set: int = 0
    right_intent: int = 0  # and in the closed set: what the ears could really do
    right_slots: int = 0  # and right intent, in the closed set
    but_context: int = 0  # right but for the slots HA takes from the speaker's area

    def add(self, other: Tally) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)


def same(expected: Any, got: Any) -> bool:
    """One slot value: names without case, numbers as numbers, a list as any of it."""
    if isinstance(expected, list):
        return any(same(e, got) for e in expected)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        try:
            return float(got) == float(expected)
        except (TypeError, ValueError):
            return False
    return str(expected).casefold() == str(got).casefold()


def slots_right(expected: dict[str, Any], got: dict[str, Any], kinds: dict[str, str]) -> bool:
    """Every expected slot given; `kinds` (device name -> kind) answers an implied domain."""
    for key, value in expected.items():
        if key in got and same(value, got[key]):
            continue
        named = kinds.get(str(got.get("name", "")).casefold())
        if key == "domain" and "domain" not in got and named is not None and same(value, named):
            continue
        return False
    return True


NEW_KINDS = {"binary_sensor", "person", "valve", "vacuum"}
NAME = re.compile(NAME_PATTERN)  # the names the config takes


def extended_home(config: Config, cases: list[dict[str, Any]]) -> Config:
    """The home plus the floors, binary sensors, persons, valves, vacuums and media that
    `cases` name and it lacks (the suite's fixture has them; home.toml could not)."""
    home = config.home
    have = {d.name.casefold() for d in home.devices} | {a.casefold() for a in home.areas}
    floors: dict[str, Floor] = {}
    devices: dict[str, HomeDevice] = {}
    media: dict[str, str] = {}
    for case in cases:
        slots = case["slots"]
        kind = slots.get("domain")
        if case["intent"].startswith("HassVacuum"):
            kind = "vacuum"
        for value in _names(slots.get("floor")):
            floors.setdefault(value.casefold(), Floor(name=value))
        for value in _names(slots.get("search_query")):
            media.setdefault(value.casefold(), value)
        if kind in NEW_KINDS:
            for value in _names(slots.get("name")):
                if value.casefold() not in have:
                    devices.setdefault(
                        value.casefold(),
                        HomeDevice(name=value, kind=kind, device_class=slots.get("device_class")),
                    )
    for key, device in devices.items():  # one name, several classes: Home Assistant's
        classes = {c["slots"].get("device_class") for c in cases  # one device, many entities
                   if str(c["slots"].get("name", "")).strip().casefold() == key}  # fmt: skip
        if len(classes) > 1:
            devices[key] = device.model_copy(update={"device_class": None})
    for kind in NEW_KINDS - {d.kind.value for d in devices.values()}:
        if any(c["slots"].get("domain") == kind for c in cases):  # asked about by class only
            devices[kind] = HomeDevice(name=f"Test {kind.replace('_', ' ')}", kind=kind)
    extended = home.model_copy(
        update={
            "floors": [*home.floors, *floors.values()],
            "devices": [*home.devices, *devices.values()],
            "media": [*home.media, *media.values()],
        }
    )
    return config.model_copy(update={"home": extended})


def _names(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [v.strip() for v in values if NAME.fullmatch(v.strip())]


def measure(folder: Path, scopes: set[str]) -> tuple[dict[str, Tally], list[str]]:
    """Tallies by intent, and a line for each sentence the ears miss or get wrong."""
    config = load_config(folder / "home.toml")
    cases = json.loads((folder / "en-dev.json").read_text())
    if scopes - {"in"}:
        config = extended_home(config, [c for c in cases if c["scope"] in scopes])
    grammar = build_grammar(config)
    nlu = IntentParser(config)
    kinds = {d.name.casefold(): d.kind.value for d in config.home.devices}
    tallies: dict[str, Tally] = defaultdict(Tally)
    misses = []
    for case in cases:
        if case["scope"] not in scopes:
            continue
        t = tallies[case["intent"]]
        t.sentences += 1
        words = normalize(case["sentence"])
        if not grammar.accepts(words):
            misses.append(f"not heard  {case['intent']:<28} {case['sentence']}")
            continue
        t.in_closed_set += 1
        match = nlu.parse(" ".join(words), here=case.get("context", {}).get("area"))
        if match is None or match.name != case["intent"]:
            got = match.name if match else "no intent"
            misses.append(f"wrong      {case['intent']:<28} {case['sentence']} -> {got}")
            continue
        t.right_intent += 1
        got = match.slot_values()
        got.pop("area_context", None)
        ours = {k: v for k, v in case["slots"].items()
                if not (k in case.get("context", {}) and k not in got)}  # fmt: skip
        if slots_right(case["slots"], got, kinds):
            t.right_slots += 1
        elif ours != case["slots"] and slots_right(ours, got, kinds):
            t.but_context += 1
        else:
            misses.append(f"slots      {case['intent']:<28} {case['sentence']} -> "
                          f"{got} want {case['slots']}")  # fmt: skip
    return dict(tallies), misses


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f} %)" if d else "0/0"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    p.add_argument("--scope", action="append", choices=["in", "excluded", "out"],
                   help="which sentences (default: in)")  # fmt: skip
    p.add_argument("--misses", action="store_true", help="also list each sentence missed")
    p.add_argument("--json", action="store_true", help="the totals as one JSON object")
    args = p.parse_args(argv)
    if not (args.folder / "en-dev.json").is_file():
        print(f"measure_coverage: error: no en-dev.json in {args.folder}", file=sys.stderr)
        return 2
    tallies, misses = measure(args.folder, set(args.scope or ["in"]))
    total = Tally()
    for t in tallies.values():
        total.add(t)
    if args.json:
        print(
            json.dumps(
                {
                    "total": asdict(total),
                    "by_intent": {k: asdict(v) for k, v in sorted(tallies.items())},
                }
            )
        )
        return 0  # fmt: skip
    print(f"{'intent':<30} {'sentences':>9} {'heard':>6} {'intent':>7} {'slots':>6} "
          f"{'but ctx':>7}")  # fmt: skip
    for name, t in sorted(tallies.items()):
        print(f"{name:<30} {t.sentences:>9} {t.in_closed_set:>6} {t.right_intent:>7} "
              f"{t.right_slots:>6} {t.but_context:>7}")  # fmt: skip
    print(f"in the closed set: {_pct(total.in_closed_set, total.sentences)}; right intent: "
          f"{_pct(total.right_intent, total.sentences)}; right intent and slots: "
          f"{_pct(total.right_slots, total.sentences)}; right but for the speaker's area: "
          f"{_pct(total.but_context, total.sentences)}")  # fmt: skip
    if args.misses:
        print("\n".join(misses))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
