"""Measure a recogniser + NLU on WAV files named by what was said, or on an espeak-ng set.

    .venv/bin/python tools/measure_asr.py ../shared/testdata/speech-en/main \
        ../shared/testdata/speech-en/generated --backend pocketsphinx
    .venv/bin/python tools/measure_asr.py --manifest .cache/speech-sets/manifest.json

Directory mode: each file name without `.wav` is the sentence spoken; `oov_*` files are speech
that is not a command and must produce no intent. The expected intent and slots are what the
NLU makes of the file name, so this measures the recogniser end to end, not the templates.
Prints one line per file, then per directory: transcript exact-match %, intent+slots correct %,
oov rejections, and decoding time per utterance.

Manifest mode (`--manifest`, written by tools/speech_sets.py): a `command` entry must give its
`intent` with its `slots` (only the keys listed are compared); `non_command`, `silence` and
`noise` entries must give nothing above the min confidence. Prints only the misses, then the
same summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pendant.config import Config, load_config
from pendant.ears.asr import create_recognizer
from pendant.ears.understand.grammar import build_grammar, normalize
from pendant.ears.understand.nlu import IntentMatch, IntentParser

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIRS = [
    ROOT.parent / "shared" / "testdata" / "speech-en" / "main",
    ROOT.parent / "shared" / "testdata" / "speech-en" / "generated",
]


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16_000, 1, 2):
            raise ValueError(f"{path}: need 16 kHz mono 16-bit, convert with sox first")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def same(a: IntentMatch | None, b: IntentMatch | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.name == b.name and a.slot_values() == b.slot_values()


@dataclass
class Tally:
    files: int = 0
    commands: int = 0
    exact: int = 0
    correct: int = 0
    oov: int = 0
    oov_rejected: int = 0
    times: list[float] = field(default_factory=list)  # seconds per file, for percentiles
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("files", "commands", "exact", "correct", "oov", "oov_rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.times += other.times
        self.failures += other.failures

    def line(self, label: str, exact: bool = True) -> str:
        pct = 100.0 / max(self.commands, 1)
        # Mean hides the long tail that decides whether the pendant feels slow; show p50/p90.
        ms = 1000 * np.array(self.times or [0.0])
        p50, p90 = np.percentile(ms, [50, 90])
        transcript = (
            f"transcript exact {self.exact}/{self.commands} ({self.exact * pct:.1f}%) | "
            if exact
            else ""
        )
        return (
            f"{label}: {self.files} files | {transcript}intent+slots {self.correct}/"
            f"{self.commands} ({self.correct * pct:.1f}%) | non-commands rejected "
            f"{self.oov_rejected}/{self.oov} ({100.0 * self.oov_rejected / max(self.oov, 1):.1f}%)"
            f" | ms/utterance mean {ms.mean():.0f} p50 {p50:.0f} p90 {p90:.0f}"
        )


def recognise(path: Path, recognizer, nlu: IntentParser, min_conf: float, tally: Tally):  # type: ignore[no-untyped-def]
    """Decode one file; return (result, accepted, intent). Only decoding time is counted."""
    audio = read_wav(path)
    start = time.perf_counter()
    result = recognizer.transcribe(audio)
    tally.times.append(time.perf_counter() - start)
    tally.files += 1
    accepted = result is not None and result.confidence >= min_conf
    got = nlu.parse(result.text) if accepted and result is not None else None
    return result, accepted, got


def describe(result, accepted: bool, got: IntentMatch | None) -> str:  # type: ignore[no-untyped-def]
    if result is None:
        return "nothing"
    heard = f"{result.text!r} conf={result.confidence:.2f}"
    if not accepted:
        return heard + " (rejected)"
    return heard + (f" -> {got.name} {got.slot_values()}" if got else " -> no intent")


def measure_dir(directory: Path, recognizer, nlu: IntentParser, min_conf: float) -> Tally:  # type: ignore[no-untyped-def]
    tally = Tally()
    for path in sorted(directory.glob("*.wav")):
        said = path.stem
        result, accepted, got = recognise(path, recognizer, nlu, min_conf, tally)
        heard = f"{result.text!r} conf={result.confidence:.2f}" if result else "nothing"
        expected = None if said.startswith("oov_") else nlu.parse(said)
        if expected is None:  # oov_* or any name that is not a command: nothing is right
            tally.oov += 1
            ok = got is None
            tally.oov_rejected += ok
        else:
            tally.commands += 1
            exact = result is not None and result.text == " ".join(normalize(said))
            tally.exact += exact
            ok = same(got, expected)
            tally.correct += ok
        mark = "ok " if ok else "BAD"
        print(f"{mark} {said:50.50} -> {heard}{'' if accepted else ' (rejected)'}")
        if not ok:
            tally.failures.append(said)
    return tally


def matches(got: IntentMatch | None, entry: dict[str, Any]) -> bool:
    # The manifest lists only the slots a case is about; extra slots the NLU adds are fine.
    if got is None or got.name != entry["intent"]:
        return False
    values = got.slot_values()
    return all(values.get(k) == v for k, v in entry["slots"].items())


def measure_manifest(manifest: Path, recognizer, nlu: IntentParser, min_conf: float) -> Tally:  # type: ignore[no-untyped-def]
    tally = Tally()
    for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
        path = manifest.parent / entry["file"]
        result, accepted, got = recognise(path, recognizer, nlu, min_conf, tally)
        if entry["kind"] == "command":
            tally.commands += 1
            ok = matches(got, entry)
            tally.correct += ok
            want = f"{entry['intent']} {entry['slots']}"
        else:  # non_command, silence, noise: any intent is a false activation
            tally.oov += 1
            ok = got is None
            tally.oov_rejected += ok
            want = "nothing"
        if not ok:
            # Voice and SNR go in the line so misses can be grouped by what made them hard.
            print(
                f"BAD {entry['kind']:11} {entry['voice']:7} {entry['snr_db']:4.1f} dB "
                f"{entry['text']!r} want {want} -> {describe(result, accepted, got)}"
            )
            tally.failures.append(entry["file"])
    return tally


def with_backend(config: Config, backend: str) -> Config:
    return config.model_copy(update={"asr": config.asr.model_copy(update={"backend": backend})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="directories of WAV files")
    parser.add_argument("--manifest", type=Path, help="manifest.json of tools/speech_sets.py")
    parser.add_argument("--config", default=str(ROOT / "examples" / "pendant.toml"))
    parser.add_argument("--backend", choices=["pocketsphinx", "whisper"], default="pocketsphinx")
    parser.add_argument("--min-confidence", type=float, help="default: the config's")
    args = parser.parse_args(argv)

    config = with_backend(load_config(args.config), args.backend)
    min_conf = config.asr.min_confidence if args.min_confidence is None else args.min_confidence
    # The default directories only stand in when nothing at all was asked for.
    dirs = args.dirs or ([] if args.manifest else [d for d in DEFAULT_DIRS if d.is_dir()])
    if not dirs and not args.manifest:
        print("no WAV directories given and ../shared/testdata is absent", file=sys.stderr)
        return 2
    if args.manifest and not args.manifest.is_file():
        print(f"{args.manifest}: no such manifest; run tools/speech_sets.py", file=sys.stderr)
        return 2
    grammar = build_grammar(config)
    nlu = IntentParser(config)
    recognizer = create_recognizer(config, grammar)
    total = Tally()
    summaries = []
    try:
        for directory in dirs:
            print(f"== {directory}")
            tally = measure_dir(directory, recognizer, nlu, min_conf)
            summaries.append(tally.line(directory.name))
            total.add(tally)
        if args.manifest:
            print(f"== {args.manifest}")
            tally = measure_manifest(args.manifest, recognizer, nlu, min_conf)
            # espeak texts are not file names, so transcript exact-match is not measured there.
            summaries.append(tally.line(args.manifest.parent.name, exact=False))
            total.add(tally)
    finally:
        recognizer.close()
    print(f"\nbackend {args.backend}, min confidence {min_conf}")
    for line in summaries:
        print(line)
    print(total.line("total", exact=not args.manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
