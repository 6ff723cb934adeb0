"""Where each service's idle memory goes: what each import stage adds, and what sharing would save.

    python tools/bench_imports.py [--out FILE]

Each service's imports, in the order its process makes them, measured in a fresh interpreter
(`python -c`, nothing else loaded): after each stage the garbage is collected and the heap
trimmed (as `pendant.core.heap.settle` does at READY), then `/proc/self/smaps_rollup` is read.
USS (private pages) is the figure: it does not depend on which other processes map the same
libraries, as PSS does, and it is what a process would give back by exiting. A stage's cost
depends on what came before it (asyncio imported once serves paho too), so the stages are
cumulative and their sum is the service's imports.

"sharing" estimates what one interpreter for two services would save: the USS of one process
importing both services' modules, against the two apart. It counts imports only, not what the
components build (a session, a grammar), which sharing would not save.

The services' memory as they run (models, grammar, buffers) is `tools/bench_services.py`'s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# What a service that reads the config imports before its own code (`pendant service NAME`).
START = [
    ("asyncio, ssl", ["asyncio", "ssl"]),
    ("pydantic", ["pydantic"]),
    ("the config's models", ["pendant.core.config"]),
    ("the events", ["pendant.core.events"]),
    ("paho-mqtt, aiomqtt", ["aiomqtt"]),
    ("cli, supervise, bus", ["pendant.app.cli", "pendant.core.supervise", "pendant.core.bus"]),
]
STAGES: dict[str, list[tuple[str, list[str]]]] = {
    "ears": [
        *START,
        ("numpy", ["numpy"]),
        ("hassil, yaml", ["hassil", "yaml"]),
        ("the ears' code", ["pendant.ears.service"]),
    ],
    "ears-child": [
        ("numpy", ["numpy"]),
        ("the recogniser child", ["pendant.ears.asr.child"]),
    ],
    "eyes": [*START, ("the eyes' code", ["pendant.eyes.service"])],
    "body": [*START, ("the body's code", ["pendant.body.service"])],
    "link": [
        *START,
        ("jsonschema", ["jsonschema"]),
        ("the link's code", ["pendant.link.service"]),
    ],
    "pairing": [*START, ("the pairing code", ["pendant.pairing.service"])],
    "web": [
        ("asyncio, ssl", ["asyncio", "ssl"]),
        ("paho-mqtt, aiomqtt", ["aiomqtt"]),
        ("the web's code", ["pendant.web.server"]),
    ],
}
SHARING = (("body", "pairing"), ("link", "web"), ("pairing", "web"))

# Run in the fresh interpreter: argv[1] is a JSON list of module lists; prints one JSON line of
# [USS kB, PSS kB] per stage, the first before any.
PROBE = """
import ctypes, gc, importlib, json, sys
def read():
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
    kb = {}
    with open('/proc/self/smaps_rollup') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('Pss', 'Private_Clean', 'Private_Dirty'):
                kb[key] = int(rest.split()[0])
    return [kb['Private_Clean'] + kb['Private_Dirty'], kb['Pss']]
out = [read()]
for modules in json.loads(sys.argv[1]):
    for name in modules:
        importlib.import_module(name)
    out.append(read())
print(json.dumps(out))
"""


def probe(stages: list[list[str]]) -> list[list[int]]:
    """[USS kB, PSS kB] of a fresh interpreter before any stage and after each."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(stages)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "device"), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    readings: list[list[int]] = json.loads(done.stdout.splitlines()[-1])
    return readings


def mb(kb: int) -> float:
    return round(kb / 1024, 1)


def measure() -> dict[str, object]:
    results: dict[str, object] = {}
    for service, stages in STAGES.items():
        readings = probe([modules for _, modules in stages])
        print(f"{service}: USS MB after each stage (+ what it added)")
        print(f"  {'the interpreter':<28} {mb(readings[0][0]):6.1f}")
        for (label, _), before, after in zip(stages, readings[:-1], readings[1:], strict=True):
            print(f"  {label:<28} {mb(after[0]):6.1f}  (+{mb(after[0] - before[0]):.1f})")
        results[f"import_uss_mb_{service.replace('-', '_')}"] = mb(readings[-1][0])
    print("sharing one interpreter (imports only): USS MB apart / together / saved")
    for a, b in SHARING:
        apart = [probe([[m for _, ms in STAGES[s] for m in ms]])[-1][0] for s in (a, b)]
        together = probe([[m for s in (a, b) for _, ms in STAGES[s] for m in ms]])[-1][0]
        saved = mb(sum(apart) - together)
        pair = f"{a} + {b}"
        print(f"  {pair:<28} {mb(sum(apart)):6.1f} / {mb(together):6.1f} / {saved:.1f}")
        results[f"sharing_saves_uss_mb_{a}_{b}"] = saved
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also merge the figures into this JSON file")
    args = parser.parse_args()
    results = measure()
    if args.out:
        merged = json.loads(args.out.read_text()) if args.out.exists() else {}
        args.out.write_text(json.dumps({**merged, **results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
