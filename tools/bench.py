"""`make bench`: latency, CPU and memory of the one-process pendant, on this machine.

Runs the real pipeline (real mosquitto brokers, real models, the simulated microphone paced in
real time) on three inputs: digital silence, room noise, and the demo stream of spoken
commands. Prints the figures and writes them to bench-results.json in the working directory.

- latency_ms_*: from the end of speech (known from the rendered audio) to the intent's arrival
  at a subscriber on the home broker. It holds the VAD noticing the end (vad_end_lag_ms: Silero
  stays confident a little past the last phoneme), the end-of-speech hangover, and the work
  after it (after_hangover_ms_*: arrival minus the VAD's end of speech minus the hangover).
- cpu_pct_*: process CPU time over wall time while listening, in percent of one core
  (start-up excluded).
- peak_rss_mb: peak resident set of `pendant listen` on the demo audio, run on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import speech_sets  # tools/ is on sys.path when run as a script

from pendant.audio import Chunk
from pendant.audio.wav import WavSource
from pendant.config import Config, load_config
from pendant.listen import simulated
from pendant.local_broker import LocalBroker
from pendant.runner import Pendant

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "speech-sets"


class MeteredSource:
    """A WAV source that notes process CPU time while audio is flowing."""

    def __init__(self, inner: WavSource) -> None:
        self.inner = inner
        self.cpu_s = 0.0
        self.wall_s = 0.0

    async def chunks(self) -> AsyncIterator[Chunk]:
        cpu0 = wall0 = None
        async for chunk in self.inner.chunks():
            if cpu0 is None:
                cpu0, wall0 = time.process_time(), time.monotonic()
            yield chunk
        if cpu0 is not None and wall0 is not None:
            self.cpu_s = time.process_time() - cpu0
            self.wall_s = time.monotonic() - wall0

    def close(self) -> None:
        self.inner.close()

    @property
    def started_ms(self) -> int | None:
        return self.inner.started_ms


async def run_once(config: Config, wav: Path) -> tuple[MeteredSource, list[tuple[float, dict]]]:
    with (
        LocalBroker(users=("pendant",)) as bus,
        LocalBroker(users=("link", "viewer"), tcp=True) as home,
    ):
        cfg = simulated(config, bus, home, realtime=True, gap_ms=0)
        source = MeteredSource(WavSource(cfg.audio, [wav]))
        pendant = Pendant(cfg, source=source, parts=("ears", "link"))  # type: ignore[arg-type]
        arrivals: list[tuple[float, dict]] = []
        async with aiomqtt.Client(
            "127.0.0.1", home.port or 0, username="viewer", password=home.password("viewer")
        ) as viewer:
            await viewer.subscribe(f"{pendant.link.base_topic}/intent/#", qos=1)

            async def collect() -> None:
                async for message in viewer.messages:
                    arrivals.append((time.time() * 1000, json.loads(bytes(message.payload))))  # type: ignore[arg-type]

            task = asyncio.create_task(collect())
            await pendant.run()
            await asyncio.sleep(0.5)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return source, arrivals


def peak_rss_mb(wav: Path) -> float:
    """Peak RSS of the one-process pendant alone (`pendant listen`), not of this harness."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pendant",
            "--config",
            str(REPO / "examples" / "pendant.toml"),
            "listen",
            str(wav),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child's: mosquitto is a few MB, the pendant is it.
    return round(max(peak, before) / 1024, 1)


def pct(source: MeteredSource) -> float:
    return round(100 * source.cpu_s / source.wall_s, 2) if source.wall_s else float("nan")


async def bench(config: Config) -> dict[str, Any]:
    manifest = json.loads(Path(speech_sets.generate(CACHE, demo=True)).read_text())
    by_kind = {e["kind"]: CACHE / e["file"] for e in manifest["files"]}
    demo = json.loads((CACHE / "demo.json").read_text())
    results: dict[str, Any] = {}
    for kind in ("silence", "noise"):
        source, arrivals = await run_once(config, by_kind[kind])
        results[f"cpu_pct_{kind}"] = pct(source)
        results[f"intents_{kind}"] = len(arrivals)
        print(f"{kind:>8}: {pct(source):6.2f} % of one core, {len(arrivals)} intents", flush=True)
    source, arrivals = await run_once(config, CACHE / demo["file"])
    results["cpu_pct_speech"] = pct(source)
    assert source.started_ms is not None
    ends = [source.started_ms + c["speech_end_s"] * 1000 for c in demo["commands"]]
    hangover = config.vad.hangover_ms
    total, after, lag = [], [], []
    for arrived_ms, intent in arrivals:
        # The command whose speech ended last before the intent arrived.
        before = [e for e in ends if e <= arrived_ms]
        if not before:
            continue
        total.append(arrived_ms - max(before))
        # What the pipeline adds once the VAD's hangover has run out.
        after.append(arrived_ms - intent["speech_end_ms"] - hangover)
        lag.append(intent["speech_end_ms"] - max(before))

    def p(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 1) if values else float("nan")

    results.update(
        {
            "latency_ms_p50": p(total, 50),
            "latency_ms_p95": p(total, 95),
            "hangover_ms": hangover,
            "vad_end_lag_ms_p50": p(lag, 50),
            "after_hangover_ms_p50": p(after, 50),
            "after_hangover_ms_p95": p(after, 95),
            "intents_received": len(arrivals),
            "commands_spoken": len(demo["commands"]),
            "peak_rss_mb": peak_rss_mb(CACHE / demo["file"]),
            "asr_backend": config.asr.backend,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
    )
    print(
        f"  speech: {results['cpu_pct_speech']:6.2f} % of one core, "
        f"{len(arrivals)}/{len(demo['commands'])} intents"
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "pendant.toml")
    parser.add_argument("--backend", choices=["pocketsphinx", "whisper"])
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    if args.backend:
        config = config.model_copy(
            update={"asr": config.asr.model_copy(update={"backend": args.backend})}
        )
    results = asyncio.run(bench(config))
    print(json.dumps(results, indent=2))
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
