"""Measure a recogniser + NLU on WAV files named by what was said, or on an espeak-ng set.

    .venv/bin/python tools/measure_asr.py ../shared/testdata/speech-en/main \
        ../shared/testdata/speech-en/generated --backend pocketsphinx
    .venv/bin/python tools/measure_asr.py --manifest .cache/speech-sets/manifest.json

Directory mode: each file name without `.wav` is the sentence spoken; `oov_*` files are speech
that is not a command and must produce no intent (`--non-commands`: every file is, e.g. the
other-languages set). A directory with no WAVs at its top level stands for every directory
under it that has some. The expected intent and slots are what the
NLU makes of the file name, so this measures the recogniser end to end, not the templates.
Prints one line per file, then per directory: transcript exact-match %, intent+slots correct %,
oov rejections, and decoding time per utterance.

Manifest mode (`--manifest`, repeatable; written by tools/speech_sets.py or
tools/kokoro_sets.py): a `command` entry must give its `intent` with its `slots` (only the keys
listed are compared); `non_command`, `silence` and `noise` entries must give nothing above the
min confidence. Prints only the misses, then the same summary line, then a breakdown per split
(tune / held-out voices, when the manifest has them) and per condition (clean, each noise,
reverb, SNR band, accent group): commands right, WRONG ACTIONS (an accepted intent that is not
the expected one, or the right intent with wrong slots: counted apart from rejections, since a
wrong action is far worse than none), commands rejected; and for speech that is not a command,
the false intents and false intents per hour of that speech (from the entries' `duration_s`).

Every summary line also counts, beside accuracy, the WRONG ACTIONS (a command accepted as an
intent that is not the one said; worse than a miss) apart from the rejected commands, and the
non-commands that became an intent. `--half tune|held-out` keeps the files in one half: a
manifest entry's own `split` when it has one, else chosen by a hash of each file's name and
folder, so constants tuned on one half can be checked on the other.
`--sweep` prints the same counts for several min confidences (the decoding is done once).
`--pressed` scores every file as if said holding the button: the recogniser's held-talk
confidence against `asr.min_confidence_pressed`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pendant.core.config import Config, load_config
from pendant.core.names import normalize
from pendant.ears.asr import BACKENDS, Transcription, create_recognizer
from pendant.ears.understand.grammar import build_grammar
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


def half_of(name: str) -> str:
    """'tune' or 'held-out', by a hash of a file's folder and name (stable across runs)."""
    return "tune" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "held-out"


@dataclass
class FileOutcome:
    """One file: what it should give and what was heard, to count at any min confidence."""

    name: str  # folder/file, as `half_of` hashes it
    half: str  # tune / held-out
    command: bool
    confidence: float  # -1 when nothing was heard
    right: bool  # the intent heard is the one expected (commands only)
    intent: bool  # the text heard parses as an intent


@dataclass
class Tally:
    files: int = 0
    commands: int = 0
    exact: int = 0
    correct: int = 0
    wrong: int = 0  # commands that gave an intent, but not the expected one
    oov: int = 0
    oov_rejected: int = 0
    times: list[float] = field(default_factory=list)  # seconds per file, for percentiles
    # CPU seconds of this process per file: on a machine shared with other work, wall time
    # measures the neighbours too.
    cpu: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("files", "commands", "exact", "correct", "wrong", "oov", "oov_rejected"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.times += other.times
        self.cpu += other.cpu
        self.failures += other.failures
        self.outcomes += other.outcomes

    def line(self, label: str, exact: bool = True) -> str:
        pct = 100.0 / max(self.commands, 1)
        # Mean hides the long tail that decides whether the pendant feels slow; show p50/p90.
        ms = 1000 * np.array(self.times or [0.0])
        p50, p90 = np.percentile(ms, [50, 90])
        c50, c90 = np.percentile(1000 * np.array(self.cpu or [0.0]), [50, 90])
        transcript = (
            f"transcript exact {self.exact}/{self.commands} ({self.exact * pct:.1f}%) | "
            if exact
            else ""
        )
        rejected = self.commands - self.correct - self.wrong
        return (
            f"{label}: {self.files} files | {transcript}intent+slots {self.correct}/"
            f"{self.commands} ({self.correct * pct:.1f}%) | WRONG ACTIONS {self.wrong} | "
            f"commands rejected {rejected} | non-commands rejected "
            f"{self.oov_rejected}/{self.oov} ({100.0 * self.oov_rejected / max(self.oov, 1):.1f}%)"
            f", accepted {self.oov - self.oov_rejected}"
            f" | ms/utterance mean {ms.mean():.0f} p50 {p50:.0f} p90 {p90:.0f}"
            f" (CPU p50 {c50:.0f} p90 {c90:.0f})"
        )

    def sweep(self, thresholds: list[float]) -> list[str]:
        """The same counts at other min confidences."""
        lines = []
        for th in thresholds:
            right = wrong = oov_accepted = 0
            for o in self.outcomes:
                accepted = o.confidence >= th and o.intent
                if o.command:
                    right += accepted and o.right
                    wrong += accepted and not o.right
                else:
                    oov_accepted += accepted
            lines.append(
                f"  min confidence {th:.2f}: right {right}/{self.commands} | wrong actions "
                f"{wrong} | commands rejected {self.commands - right - wrong} | "
                f"non-commands accepted {oov_accepted}/{self.oov}"
            )
        return lines


def recognise(path: Path, recognizer, nlu: IntentParser, min_conf: float, tally: Tally):  # type: ignore[no-untyped-def]
    """Decode one file; return (result, accepted, intent). Only decoding time is counted."""
    audio = read_wav(path)
    start, cpu = time.perf_counter(), time.process_time()
    result = recognizer.transcribe(audio)
    tally.times.append(time.perf_counter() - start)
    tally.cpu.append(time.process_time() - cpu)
    tally.files += 1
    heard = nlu.parse(result.text) if result is not None else None
    if heard is not None and nlu.contested(heard, result.rivals) is not None:
        heard = None  # as the ears decide: too close to a sentence meaning something else
    accepted = result is not None and result.confidence >= min_conf
    got = heard if accepted else None
    return result, accepted, got, heard


def count(tally: Tally, name: str, half: str, result, expected_ok, command: bool, heard) -> None:  # type: ignore[no-untyped-def]
    """Record one file's outcome for sweeps (`expected_ok`: is `heard` the right intent)."""
    conf = -1.0 if result is None else result.confidence
    tally.outcomes.append(
        FileOutcome(name, half, command, conf, bool(expected_ok), heard is not None)
    )


def describe(result, accepted: bool, got: IntentMatch | None) -> str:  # type: ignore[no-untyped-def]
    if result is None:
        return "nothing"
    heard = f"{result.text!r} conf={result.confidence:.2f}"
    if not accepted:
        return heard + " (rejected)"
    return heard + (f" -> {got.name} {got.slot_values()}" if got else " -> no intent")


def wav_dirs(directory: Path) -> list[Path]:
    """`directory`, or when it has no WAVs at its top level, every folder under it that has."""
    if any(directory.glob("*.wav")):
        return [directory]
    return sorted({p.parent for p in directory.rglob("*.wav")})


def measure_dir(  # type: ignore[no-untyped-def]
    directory: Path,
    recognizer,
    nlu: IntentParser,
    min_conf: float,
    half: str | None = None,
    non_commands: bool = False,
) -> Tally:
    tally = Tally()
    for path in sorted(directory.glob("*.wav")):
        name = f"{directory.name}/{path.name}"
        file_half = half_of(name)
        if half is not None and file_half != half:
            continue
        said = path.stem
        result, accepted, got, heard_intent = recognise(path, recognizer, nlu, min_conf, tally)
        heard = f"{result.text!r} conf={result.confidence:.2f}" if result else "nothing"
        expected = None if non_commands or said.startswith("oov_") else nlu.parse(said)
        if expected is None:  # oov_* or any name that is not a command: nothing is right
            tally.oov += 1
            ok = got is None
            tally.oov_rejected += ok
            count(tally, name, file_half, result, False, False, heard_intent)
        else:
            tally.commands += 1
            exact = result is not None and result.text == " ".join(normalize(said))
            tally.exact += exact
            ok = same(got, expected)
            tally.correct += ok
            tally.wrong += got is not None and not ok
            count(tally, name, file_half, result, same(heard_intent, expected), True, heard_intent)
        mark = "ok " if ok else ("BAD" if got is None else "WRONG")
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


@dataclass
class Outcome:
    """One manifest entry measured: where it belongs and how it went."""

    split: str
    condition: str  # clean / pink / babble / music / reverb (reverb alone) / recorded / ...
    reverb: bool
    accent: str
    snr_db: float | None
    kind: str  # "command" or anything else (speech or sound that is not a command)
    outcome: str  # command: right / wrong / rejected; otherwise: quiet / false
    duration_s: float


def _condition(entry: dict[str, Any]) -> str:
    if "condition" in entry:
        return str(entry["condition"])
    if entry.get("kind") in ("silence", "noise"):
        return str(entry["kind"])
    return "room noise" if entry.get("snr_db") is not None else "clean"  # speech_sets.py


def measure_manifest(
    manifest: Path,
    recognizer,  # type: ignore[no-untyped-def]
    nlu: IntentParser,
    min_conf: float,
    outcomes: list[Outcome] | None = None,
    half: str | None = None,
) -> Tally:
    tally = Tally()
    for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]:
        split = entry.get("split")
        file_half = split if split in ("tune", "held-out") else half_of(entry["file"])
        if half is not None and file_half != half:
            continue
        path = manifest.parent / entry["file"]
        result, accepted, got, heard = recognise(path, recognizer, nlu, min_conf, tally)
        if entry["kind"] == "command":
            tally.commands += 1
            ok = matches(got, entry)
            tally.correct += ok
            tally.wrong += got is not None and not ok
            count(tally, entry["file"], file_half, result, matches(heard, entry), True, heard)
            outcome = "right" if ok else ("rejected" if got is None else "wrong")
            want = f"{entry['intent']} {entry['slots']}"
        else:  # non_command, silence, noise: any intent is a false activation
            tally.oov += 1
            ok = got is None
            tally.oov_rejected += ok
            count(tally, entry["file"], file_half, result, False, False, heard)
            outcome = "quiet" if ok else "false"
            want = "nothing"
        if outcomes is not None:
            outcomes.append(
                Outcome(
                    split=str(entry.get("split") or manifest.parent.name),
                    condition=_condition(entry),
                    reverb=bool(entry.get("reverb")),
                    accent=str(entry.get("accent") or "-"),
                    snr_db=entry.get("snr_db"),
                    kind="command" if entry["kind"] == "command" else "other",
                    outcome=outcome,
                    duration_s=float(entry.get("duration_s") or len(read_wav(path)) / 16_000),
                )
            )
        if not ok:
            # Voice, SNR and condition go in the line so misses can be grouped by what made
            # them hard; a wrong action is marked apart from a rejection.
            snr = "no noise" if entry.get("snr_db") is None else f"{entry['snr_db']:4.1f} dB"
            condition = _condition(entry)
            if entry.get("reverb") and condition != "reverb":
                condition += "+reverb"
            mark = "WRONG" if outcome in ("wrong", "false") else "BAD  "
            print(
                f"{mark} {entry['kind']:11} {entry.get('voice') or '-':13} {snr:8} "
                f"{condition} "
                f"{entry['text']!r} want {want} -> {describe(result, accepted, got)}"
            )
            tally.failures.append(entry["file"])
    return tally


def _row(label: str, rows: list[Outcome]) -> str | None:
    commands = [r for r in rows if r.kind == "command"]
    other = [r for r in rows if r.kind != "command"]
    if not commands and not other:
        return None
    parts = [f"  {label:22}"]
    if commands:
        n = len(commands)
        right = sum(r.outcome == "right" for r in commands)
        wrong = sum(r.outcome == "wrong" for r in commands)
        rejected = sum(r.outcome == "rejected" for r in commands)
        parts.append(
            f"commands {n:4}: right {right:4} ({100 * right / n:5.1f}%)  "
            f"WRONG ACTIONS {wrong:3} ({100 * wrong / n:4.1f}%)  rejected {rejected:4}"
        )
    else:
        parts.append(" " * 79)
    if other:
        hours = sum(r.duration_s for r in other) / 3600.0
        false = sum(r.outcome == "false" for r in other)
        parts.append(
            f"| not commands {len(other):4} ({hours * 60:5.1f} min): false intents {false:3}"
            f" = {false / hours if hours else 0.0:6.1f}/h"
        )
    return "  ".join(parts)


def breakdown(outcomes: list[Outcome]) -> list[str]:
    """The table that matters: per split, then per condition, SNR band and accent group."""
    order = {"tune": 0, "held-out": 1}
    splits = sorted({o.split for o in outcomes}, key=lambda s: (order.get(s, 2), s))
    groups: list[tuple[str, list[Outcome]]] = [
        (s, [o for o in outcomes if o.split == s]) for s in splits
    ]
    if len(splits) > 1:
        groups.append(("all", outcomes))
    lines = []
    for name, rows in groups:
        lines.append(f"{name}:")
        selections: list[tuple[str, list[Outcome]]] = [("all", rows)]
        conditions = sorted({r.condition for r in rows})
        preferred = ["clean", "pink", "babble", "music", "reverb"]
        conditions.sort(key=lambda c: (preferred.index(c) if c in preferred else 9, c))
        if len(conditions) > 1:
            selections += [
                (c + (" (alone)" if c == "reverb" else ""), [r for r in rows if r.condition == c])
                for c in conditions
            ]
        if any(r.reverb for r in rows) and any(r.condition != "reverb" and r.reverb for r in rows):
            selections.append(("reverb (any)", [r for r in rows if r.reverb]))
        noisy = [r for r in rows if r.snr_db is not None]
        if noisy:
            selections.append(("SNR 0-10 dB", [r for r in noisy if r.snr_db < 10.0]))
            selections.append(("SNR 10-20 dB", [r for r in noisy if r.snr_db >= 10.0]))
        accents = sorted({r.accent for r in rows} - {"-"})
        if len(accents) > 1:
            selections += [(f"accent: {a}", [r for r in rows if r.accent == a]) for a in accents]
        lines += [line for label, sel in selections if (line := _row(label, sel)) is not None]
    return lines


class HeldTalk:
    """A recogniser whose confidence is its held-talk one (`Transcription.confidence_for`)."""

    def __init__(self, recognizer) -> None:  # type: ignore[no-untyped-def]
        self.recognizer = recognizer

    def transcribe(self, audio: np.ndarray) -> Transcription | None:
        result = self.recognizer.transcribe(audio)
        if result is None:
            return None
        return replace(result, confidence=result.confidence_for(pressed=True))

    def close(self) -> None:
        self.recognizer.close()


def with_backend(config: Config, backend: str) -> Config:
    return config.model_copy(update={"asr": config.asr.model_copy(update={"backend": backend})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", type=Path, help="directories of WAV files")
    parser.add_argument(
        "--manifest",
        type=Path,
        action="append",
        default=[],
        help="manifest.json of tools/speech_sets.py or tools/kokoro_sets.py (repeatable)",
    )
    parser.add_argument("--config", default=str(ROOT / "examples" / "pendant.toml"))
    parser.add_argument("--backend", choices=sorted(BACKENDS), help="default: the config's")
    parser.add_argument("--min-confidence", type=float, help="default: the config's")
    parser.add_argument(
        "--non-commands", action="store_true", help="every WAV is speech that is not a command"
    )
    parser.add_argument("--half", choices=["tune", "held-out"], help="only one half of the files")
    parser.add_argument(
        "--sweep",
        type=lambda v: [float(x) for x in v.split(",")],
        help="comma-separated min confidences to count again, e.g. 0.3,0.5,0.7",
    )
    parser.add_argument(
        "--pressed", action="store_true", help="score every file as said holding the button"
    )
    parser.add_argument(
        "--outcomes", type=Path, help="write each file's outcome there (JSON lines)"
    )
    args = parser.parse_args(argv)

    config = load_config(args.config)
    if args.backend:
        config = with_backend(config, args.backend)
    floor = config.asr.min_confidence_pressed if args.pressed else config.asr.min_confidence
    min_conf = floor if args.min_confidence is None else args.min_confidence
    # The default directories only stand in when nothing at all was asked for.
    dirs = args.dirs or ([] if args.manifest else [d for d in DEFAULT_DIRS if d.is_dir()])
    if not dirs and not args.manifest:
        print("no WAV directories given and ../shared/testdata is absent", file=sys.stderr)
        return 2
    for manifest in args.manifest:
        if not manifest.is_file():
            print(f"{manifest}: no such manifest; run tools/speech_sets.py", file=sys.stderr)
            return 2
    grammar = build_grammar(config)
    nlu = IntentParser(config)
    recognizer = create_recognizer(config, grammar)
    if args.pressed:
        recognizer = HeldTalk(recognizer)
    total = Tally()
    summaries = []
    outcomes: list[Outcome] = []
    try:
        for directory in [d for given in dirs for d in wav_dirs(given)]:
            print(f"== {directory}")
            tally = measure_dir(directory, recognizer, nlu, min_conf, args.half, args.non_commands)
            summaries.append(tally.line(f"{directory.parent.name}/{directory.name}"))
            total.add(tally)
        for manifest in args.manifest:
            print(f"== {manifest}")
            tally = measure_manifest(manifest, recognizer, nlu, min_conf, outcomes, args.half)
            # espeak texts are not file names, so transcript exact-match is not measured there.
            summaries.append(tally.line(manifest.parent.name, exact=False))
            total.add(tally)
    finally:
        recognizer.close()
    half = f", {args.half} half" if args.half else ""
    held = ", held talk" if args.pressed else ""
    print(f"\nbackend {config.asr.backend}, min confidence {min_conf}{half}{held}")
    for line in summaries:
        print(line)
    print(total.line("total", exact=not args.manifest))
    if args.sweep:
        print("\n".join(total.sweep(args.sweep)))
    if args.outcomes:
        with args.outcomes.open("w", encoding="utf-8") as f:
            for o in total.outcomes:
                f.write(json.dumps(o.__dict__) + "\n")
    if outcomes:
        print(
            "\nper split and condition (WRONG ACTIONS: an accepted intent that is not the one said)"
        )
        for line in breakdown(outcomes):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
