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
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pendant.config import load_config
from pendant.grammar import build_grammar, normalize
from pendant.nlu import IntentParser

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


def measure(folder: Path, scopes: set[str]) -> tuple[dict[str, Tally], list[str]]:
    """Tallies by intent, and a line for each sentence the ears miss or get wrong."""
    config = load_config(folder / "home.toml")
    grammar = build_grammar(config)
    nlu = IntentParser(config)
    cases = json.loads((folder / "en-dev.json").read_text())
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
