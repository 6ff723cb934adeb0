"""Measure a recogniser + NLU on WAV files named by what was said.

    .venv/bin/python tools/measure_asr.py ../shared/testdata/speech-en/main \
        ../shared/testdata/speech-en/generated --backend pocketsphinx

Each file name without `.wav` is the sentence spoken; `oov_*` files are speech that is not a
command and must produce no intent. The expected intent and slots are what the NLU makes of
the file name, so this measures the recogniser end to end, not the templates. Prints one line
per file, then per directory: transcript exact-match %, intent+slots correct %, oov rejections,
and decoding time per utterance.
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pendant.asr import create_recognizer
from pendant.config import Config, load_config
from pendant.grammar import build_grammar, normalize
from pendant.nlu import IntentMatch, IntentParser

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
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self, label: str) -> str:
        pct = 100.0 / max(self.commands, 1)
        return (
            f"{label}: {self.files} files | transcript exact {self.exact}/{self.commands} "
            f"({self.exact * pct:.1f}%) | intent+slots {self.correct}/{self.commands} "
            f"({self.correct * pct:.1f}%) | oov rejected {self.oov_rejected}/{self.oov} | "
            f"{1000 * self.seconds / max(self.files, 1):.0f} ms/utterance"
        )


def measure_dir(directory: Path, recognizer, nlu: IntentParser, min_conf: float) -> Tally:  # type: ignore[no-untyped-def]
    tally = Tally()
    for path in sorted(directory.glob("*.wav")):
        said = path.stem
        audio = read_wav(path)
        start = time.perf_counter()
        result = recognizer.transcribe(audio)
        tally.seconds += time.perf_counter() - start
        accepted = result is not None and result.confidence >= min_conf
        got = nlu.parse(result.text) if accepted and result is not None else None
        heard = f"{result.text!r} conf={result.confidence:.2f}" if result else "nothing"
        tally.files += 1
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


def with_backend(config: Config, backend: str) -> Config:
    return config.model_copy(update={"asr": config.asr.model_copy(update={"backend": backend})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="directories of WAV files")
    parser.add_argument("--config", default=str(ROOT / "examples" / "pendant.toml"))
    parser.add_argument("--backend", choices=["pocketsphinx", "whisper"], default="pocketsphinx")
    parser.add_argument("--min-confidence", type=float, help="default: the config's")
    args = parser.parse_args(argv)

    config = with_backend(load_config(args.config), args.backend)
    min_conf = config.asr.min_confidence if args.min_confidence is None else args.min_confidence
    dirs = args.dirs or [d for d in DEFAULT_DIRS if d.is_dir()]
    if not dirs:
        print("no WAV directories given and ../shared/testdata is absent", file=sys.stderr)
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
            for name in ("files", "commands", "exact", "correct", "oov", "oov_rejected"):
                setattr(total, name, getattr(total, name) + getattr(tally, name))
            total.seconds += tally.seconds
    finally:
        recognizer.close()
    print(f"\nbackend {args.backend}, min confidence {min_conf}")
    for line in summaries:
        print(line)
    print(total.line("total"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
