"""`make bench`: latency, CPU and memory of the one-process pendant, on this machine.

Runs the real pipeline (real mosquitto brokers, real models, the simulated microphone paced in
real time) on three inputs: digital silence, room noise, and the demo stream of spoken
commands. Prints the figures and writes them to bench-results.json in the working directory.

- latency_ms_*: from the end of speech (known from the rendered audio) to the intent's arrival
  at a subscriber on the home broker. It holds the VAD noticing the end (vad_end_lag_ms: Silero
  stays confident a little past the last phoneme), then the wait for the end (the hangover, or
  less when the sentence heard is over: pendant.ears.endpoint) and the work
  (after_vad_end_ms_*: arrival minus the VAD's end of speech).
- cpu_pct_*: process CPU time over wall time while listening, in percent of one core
  (start-up excluded).
- peak_rss_mb: peak resident set of `pendant listen` on the demo audio, run on its own.
- eyes_*_ms_p50: one 640x480 frame through the eyes (face guard, OCR, detector), per stage,
  on the bundled label images and a photo with a face; eyes_peak_rss_mb: `pendant look`.
- pss_mb_*, uss_mb_*: the six services running at once as their units start them, idle and
  at the peak of a spoken command and three captures (tools/bench_services.py).
- import_uss_mb_*, sharing_saves_uss_mb_*: what each service's imports hold, and what one
  interpreter for two services would save in imports (tools/bench_imports.py).
- wear_hours_*: the power model's hours on the 1200 mAh cell with the image's power settings
  (hw/power.md): silence, talkative, read_this (50 captures); wear_hours_conversation is the
  talkative day, the goal's.
- eyes_capture_*: the eyes service alone and its reader process, idle and during a capture,
  and a capture's latency with a new reader and a kept one (tools/bench_eyes.py).
- escalate_*: the ears' open-vocabulary transcription for asking a bigger model: word error
  rate on ../shared/testdata/speech-en and on espeak-ng questions (one set seen while choosing
  Whisper's window, one held out), CPU ms an utterance, the recogniser process's peak with it
  and without (tools/bench_escalate.py).
- escalate_answer_ms_ha_*: end of speech -> Home Assistant's answer at a subscriber, the question
  asked with the phrase, the real Home Assistant of `make test-ha` (tools/bench_ask.py; None, and
  the reason, without its root or as a user other than root).
- speaker_*: the voice encoder of issue 19 (tools/measure_speaker.py, on the speech it has
  cached: `make measure-speaker` renders the Kokoro part): equal error rate, the share of other
  voices accepted and of the wearer's rejected at the default threshold, on the calibration
  and the held-out voices apart; CPU ms an utterance.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np
import speech_sets  # tools/ is on sys.path when run as a script
from bench_ask import ask_figures
from bench_escalate import escalate_figures
from bench_eyes import eyes_capture_figures
from bench_imports import measure as import_memory
from bench_services import service_memory
from measure_speaker import speaker_figures

from pendant.app.local_broker import LocalBroker
from pendant.app.one_process import Pendant
from pendant.app.replay import simulated
from pendant.core.config import Config, load_config
from pendant.ears.asr import BACKENDS
from pendant.ears.audio import Chunk
from pendant.ears.audio.wav import WavSource

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "speech-sets"


def proc_cpu_s(pid: int) -> float:
    """User and system CPU time of process `pid` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_mb(pid: int) -> float | None:
    """Peak resident set of process `pid` (VmHWM), while it runs."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024, 1)


class MeteredSource:
    """A WAV source that notes CPU time while audio is flowing: this process's, and that of
    the helper processes `helpers` names (the ears' recogniser)."""

    def __init__(self, inner: WavSource) -> None:
        self.inner = inner
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.helpers: Callable[[], list[int]] = list
        self.helper_peaks_mb: list[float | None] = []

    def _cpu_s(self) -> float:
        return time.process_time() + sum(proc_cpu_s(pid) for pid in self.helpers())

    async def chunks(self) -> AsyncIterator[Chunk]:
        cpu0 = wall0 = None
        async for chunk in self.inner.chunks():
            if cpu0 is None:
                cpu0, wall0 = self._cpu_s(), time.monotonic()
            yield chunk
        if cpu0 is not None and wall0 is not None:
            self.cpu_s = self._cpu_s() - cpu0
            self.wall_s = time.monotonic() - wall0
        self.helper_peaks_mb = [proc_peak_mb(pid) for pid in self.helpers()]

    def close(self) -> None:
        self.inner.close()

    @property
    def realtime(self) -> bool:
        return self.inner.realtime

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
        recognizer = pendant.ears.understanding.recognizer
        source.helpers = lambda: [recognizer.pid]
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


# The child's own high-water mark, from /proc: ru_maxrss would not do, since Linux carries the
# parent's (this harness's, models and all) over fork and exec into the child's figure.
_PEAK = (
    "import atexit, re, sys\n"
    "def _peak():\n"
    "    hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "    sys.stderr.write(f'\\nPEAK_KB {hwm}\\n')\n"
    "atexit.register(_peak)\n"
)


def child_peak_mb(code: str) -> float:
    """Peak RSS of a fresh Python process running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK + code],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return round(int(done.stderr.rsplit("PEAK_KB", 1)[1].split()[0]) / 1024, 1)


def pendant_peak_mb(*args: str) -> float:
    """Peak RSS of `pendant ARGS` on the demo config, run on its own."""
    argv = ["--config", str(REPO / "examples" / "pendant.toml"), *args]
    return child_peak_mb(f"import pendant.app.cli as c; c.main({argv!r})")


def peak_rss_mb(wav: Path) -> float:
    """Peak RSS of the one-process pendant alone (`pendant listen`), not of this harness."""
    return pendant_peak_mb("listen", str(wav))


def eyes_figures(config: Config) -> dict[str, float]:
    """Per-stage time of the eyes on real frames, and `pendant look`'s peak memory."""
    from pendant.eyes.images import fit, load_image
    from pendant.eyes.pipeline import Eyes

    images = sorted((REPO / "device" / "pendant" / "data" / "eyes").glob("*.png"))
    frames = [fit(load_image(p), config.eyes.width, config.eyes.height) for p in images]
    with contextlib.suppress(ImportError):
        from skimage import data  # a public-domain photo with a face, inside the wheel

        frames.append(fit(data.astronaut(), config.eyes.width, config.eyes.height))
    eyes = Eyes(config)
    eyes.warm_up()
    stages: dict[str, list[float]] = {"face_guard": [], "ocr": [], "detector": [], "total": []}
    for _ in range(3):
        for frame in frames:
            work = frame.copy()
            t0 = time.perf_counter()
            eyes.guard.mask(work)
            t1 = time.perf_counter()
            eyes.reader.read(work)
            t2 = time.perf_counter()
            eyes.detector.detect(work)
            t3 = time.perf_counter()
            for name, ms in (("face_guard", t1 - t0), ("ocr", t2 - t1), ("detector", t3 - t2)):
                stages[name].append(ms * 1000)
            stages["total"].append((t3 - t0) * 1000)
    eyes.close()
    out = {f"eyes_{k}_ms_p50": round(float(np.percentile(v, 50)), 1) for k, v in stages.items()}
    out["eyes_peak_rss_mb"] = pendant_peak_mb("look", *map(str, images))
    return out


HA_HOME = REPO.parent / "shared" / "testdata" / "ha-sentences" / "home.toml"


def generated_home(devices: int) -> Config:
    """A home of `devices` devices (lights, switches, fans, covers, sensors) in 12 areas,
    to see how the closed set grows with a big house."""
    from pendant.core.config import Config as _Config

    letters = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]
    letters += ["India", "Juliet", "Kilo", "Lima"]
    areas = [f"Room {name}" for name in letters]
    kinds = ["light", "switch", "fan", "cover", "sensor"]
    things = ["Lamp", "Heater", "Speaker", "Blind", "Monitor", "Strip", "Plug", "Pump"]
    things += ["Vent", "Shade", "Spot", "Panel"]
    devices = [
        {"name": f"{letters[i % 12]} {things[i % 12]} {i // 12}", "kind": kinds[i % 5],
         "area": areas[i % 12]}
        for i in range(devices)
    ]  # fmt: skip
    home = {"areas": areas, "devices": devices}
    return _Config.model_validate({"home": home})


def recogniser_peak_mb(backend: str, cache: Path, wav: Path | None = None) -> float | None:
    """Peak RSS of a process holding the test home's grammar, as the ears hold it (compiled
    by a child process into the cache, pendant.ears.understand.grammar_build), and the
    `backend` recogniser built on it, having decoded `wav` if given; None if the backend
    cannot load here."""
    decode = (
        "import wave, numpy as np\n"
        f"w = wave.open({str(wav)!r})\n"
        "r.transcribe(np.frombuffer(w.readframes(w.getnframes()), dtype='<i2'))\n"
        if wav
        else ""
    )
    try:
        return child_peak_mb(
            "from pathlib import Path\n"
            "from pendant.core.config import load_config\n"
            "from pendant.ears.asr import create_recognizer\n"
            "from pendant.ears.understand.grammar_build import compile_grammar\n"
            f"c = load_config({str(HA_HOME)!r})\n"
            f"asr = c.asr.model_copy(update={{'backend': {backend!r}}})\n"
            "c = c.model_copy(update={'asr': asr})\n"
            f"r = create_recognizer(c, compile_grammar(c, Path({str(cache)!r})))\n" + decode
        )
    except subprocess.CalledProcessError:
        return None


def grammar_figures() -> dict[str, Any]:
    """States, arcs, words and compile time of the closed set for Home Assistant's test home
    (when ../shared has it) and a generated 300-device home; load time from the cache; peak
    RSS of a process holding the test home's grammar and pocketsphinx recogniser."""
    import tempfile

    from pendant.ears.understand.grammar import build_grammar

    homes = {"ha_test_home": load_config(HA_HOME)} if HA_HOME.is_file() else {}
    homes["home_300"] = generated_home(300)
    out: dict[str, Any] = {}
    for label, home in homes.items():
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.perf_counter()
            g = build_grammar(home, Path(cache))
            t1 = time.perf_counter()
            build_grammar(home, Path(cache))
            t2 = time.perf_counter()
            if label == "ha_test_home":
                # As the ears hold it: the grammar compiled by a child process into the cache
                # (pendant.ears.understand.grammar_build), then the recogniser built on it.
                recogniser_mb = recogniser_peak_mb("pocketsphinx", Path(cache))
                hama_mb = recogniser_peak_mb("hama", Path(cache))
                # The compiling child's own peak, beside the ears while they run.
                compile_mb = child_peak_mb(
                    "from pendant.core.config import load_config\n"
                    "from pendant.ears.understand.grammar import build_grammar\n"
                    f"build_grammar(load_config({str(HA_HOME)!r}))\n"
                )
        out[f"grammar_{label}"] = {
            "devices": len(home.home.devices),
            "states": g.graph.n_states,
            "arcs": len(g.graph.arcs),
            "words": len(g.words),
            "core_arcs": len(g.core.arcs) if g.core else 0,
            "compile_s": round(t1 - t0, 2),
            "cached_load_s": round(t2 - t1, 2),
        }
        if label == "ha_test_home":
            out[f"grammar_{label}"]["recogniser_peak_rss_mb"] = recogniser_mb
            if hama_mb is not None:
                out[f"grammar_{label}"]["hama_recogniser_peak_rss_mb"] = hama_mb
            out[f"grammar_{label}"]["compile_child_peak_rss_mb"] = compile_mb
        print(f" grammar: {label}: {out[f'grammar_{label}']}", flush=True)
    return out


def wear_hours() -> dict[str, Any]:
    """Hours of wear on the 1200 mAh cell from the power model (tools/hw_power.py), with
    bench-arm-results.json's CPU figures when `make bench-arm` wrote one, else hw/power-cpu.json.
    An estimate from published board figures, not measured here."""
    import hw_power  # tools/ is on sys.path when run as a script

    try:
        figures = hw_power.bench_figures()
    except hw_power.PowerError as exc:
        print(f"    wear: not computed: {exc}", file=sys.stderr)
        return {}
    print(f"    wear: {figures['wear_hours_conversation']} h of conversation mode (model)")
    return figures


def ocr_figures(config: Config) -> dict[str, float]:
    """The eyes' OCR on tools/measure_ocr.py's held-out part (fonts and texts never tuned on;
    ocr_cer_heldout, ocr_word_acc_heldout) and its photos without text (ocr_false_text_images:
    those where anything was read), and the mean time a 640 x 480 image takes (ocr_ms_per_image).
    About 20 s."""
    import measure_ocr  # tools/ is on sys.path when run as a script

    from pendant.core.model_cache import model_path
    from pendant.eyes import OCR_MODEL

    model = model_path(config, OCR_MODEL)
    figures = measure_ocr.bench_figures(model, config.eyes.ocr_min_confidence)
    print(f"     ocr: {figures}", flush=True)
    return figures


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
        # What the pipeline adds once the VAD has heard the end: the wait, then the work.
        after.append(arrived_ms - intent["speech_end_ms"])
        lag.append(intent["speech_end_ms"] - max(before))

    def p(values: list[float], q: float) -> float:
        return round(float(np.percentile(values, q)), 1) if values else float("nan")

    results.update(
        {
            "latency_ms_p50": p(total, 50),
            "latency_ms_p95": p(total, 95),
            "hangover_ms": hangover,
            "vad_end_lag_ms_p50": p(lag, 50),
            "after_vad_end_ms_p50": p(after, 50),
            "after_vad_end_ms_p95": p(after, 95),
            "intents_received": len(arrivals),
            "commands_spoken": len(demo["commands"]),
            "peak_rss_mb": peak_rss_mb(CACHE / demo["file"]),
            # The ears' recogniser runs in a process of its own (pendant.ears.asr.worker).
            "recognizer_peak_rss_mb": source.helper_peaks_mb[0],
            "asr_backend": config.asr.backend,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        }
    )
    print(
        f"  speech: {results['cpu_pct_speech']:6.2f} % of one core, "
        f"{len(arrivals)}/{len(demo['commands'])} intents"
    )
    results.update(eyes_figures(config))
    print(f"    eyes: {results['eyes_total_ms_p50']:.0f} ms a frame (p50)", flush=True)
    results.update(await service_memory())
    results.update(import_memory())
    results.update(await eyes_capture_figures())
    results.update(grammar_figures())
    results.update(wear_hours())
    results.update(ocr_figures(config))
    results.update(await escalate_figures(config))
    results.update(await ask_figures(config))
    results.update(speaker_figures())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "pendant.toml")
    parser.add_argument("--backend", choices=sorted(BACKENDS))
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
