"""Measure the eyes' OCR: accuracy on text it renders itself, false text on photos, CPU, memory.

    python tools/measure_ocr.py                          # the manifest's OCR models
    python tools/measure_ocr.py --model v6=/some/dir     # a candidate: det.onnx, rec.onnx, cls.onnx
    python tools/measure_ocr.py --set DET_SHORT_SIDE=640 # a constant of pendant.eyes.ocr, changed

Every model set is read through `pendant.eyes.ocr.TextReader` (the eyes' own pre- and
post-processing), each in a fresh process of its own so its memory is its own. Nothing is
downloaded: tools/ocr_sets.py renders the text images with Pillow from Debian's fonts
(fonts-dejavu-core, fonts-liberation), seeded, so every run sees the same pixels; the photos are
the bundled demo images and scikit-image's sample images (inside its wheel).

The parts, each reported on its own:
- tune: DejaVu fonts, one set of texts: what thresholds and choices may be tuned on;
- heldout: Liberation fonts and other texts, never looked at while tuning: the figures to trust;
- photos: the demo labels and scikit-image's `page` (a photo of a printed page);
- notext: photos with no text in them (scikit-image's chelsea, coffee, astronaut, ...): any text
  read there is a false accept.

Each rendered image is a card (a label, a sign, a menu line, a letter) in a 640 x 480 frame with
one condition: clean, rotated, tilted (perspective), blurred, uneven light and glare, JPEG
noise, low resolution, or all of them mildly.

Figures: cer (character error rate: edit distance over the reference's length, lines joined by
a space, case and punctuation counted), word_acc (share of the reference's words read exactly),
lines_missed (share of reference lines less than half of whose words were read), false_text
(notext images where anything was read), cpu_ms (process CPU time per image; the sessions run
one thread, as the eyes run them), pss_mb (the worker's PSS from /proc/self/smaps_rollup, the
most of its samples after each image: what stays mapped), peak_rss_mb (its VmHWM, which holds the
transient buffers too) and *_models (each less the worker's figure before the models loaded).
The images themselves: `python tools/ocr_sets.py DIR`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ocr_sets import (
    CONDITIONS,
    HEIGHT,
    PARTS,
    REPO,
    WIDTH,
    SetError,
    samples,
)  # tools/ is on sys.path

if TYPE_CHECKING:
    from pendant.core.config import Config

# --------------------------------------------------------------------------- scoring


def score(reference: list[str], read: list[str]) -> dict[str, float]:
    """cer, word_acc and lines_missed of the lines `read` against the `reference` lines."""
    from collections import Counter

    from rapidfuzz.distance import Levenshtein

    ref, hyp = " ".join(reference), " ".join(" ".join(read).split())
    words = Counter(hyp.split())
    ref_words = Counter(ref.split())
    found = sum(min(n, words[w]) for w, n in ref_words.items())
    missed = sum(
        1
        for line in reference
        if sum(min(n, words[w]) for w, n in Counter(line.split()).items()) < len(line.split()) / 2
    )
    return {
        "errors": Levenshtein.distance(ref, hyp),
        "chars": len(ref),
        "words_found": found,
        "words": sum(ref_words.values()),
        "lines_missed": missed,
        "lines": len(reference),
    }


def pss_mb() -> float:
    """This process's proportional set size now (shared pages split among their users)."""
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident set so far (VmHWM): the transient buffers PSS misses."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    return _status_mb("VmRSS")


def apply_settings(settings: list[str]) -> None:
    """`NAME=VALUE` pairs set on pendant.eyes.ocr's constants, for trying a threshold."""
    from pendant.eyes import ocr

    for item in settings:
        key, _, value = item.partition("=")
        if not hasattr(ocr, key) or not key.isupper():
            raise SetError(f"--set {item}: pendant.eyes.ocr has no constant {key}")
        setattr(ocr, key, type(getattr(ocr, key))(value))


def measure(
    model_dir: Path, parts: tuple[str, ...], settings: list[str], min_confidence: float
) -> dict[str, Any]:
    """Every sample of `parts` through a TextReader on `model_dir`, in this process."""
    from pendant.eyes.ocr import TextReader

    apply_settings(settings)
    todo = list(samples(parts))
    before, rss_before = pss_mb(), rss_mb()
    reader = TextReader(model_dir, min_confidence)
    loaded = pss_mb()
    reader.read(np.full((HEIGHT, WIDTH, 3), 255, np.uint8))  # the first run allocates
    peak = pss_mb()
    rows = []
    for s in todo:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        lines = reader.read(s.frame.copy())
        cpu_ms = (time.process_time() - cpu0) * 1000
        wall_ms = (time.perf_counter() - wall0) * 1000
        peak = max(peak, pss_mb())
        read = [line.text for line in lines]
        confidence = [round(line.confidence, 3) for line in lines]
        rows.append(
            {"part": s.part, "name": s.name, "condition": s.condition, "read": read,
             "confidence": confidence,
             "cpu_ms": cpu_ms, "wall_ms": wall_ms, **score(s.lines, read)}
        )  # fmt: skip
    return {
        "rows": rows,
        "pss_mb_before_models": round(before, 1),
        "pss_mb_loaded": round(loaded, 1),
        "pss_mb": round(peak, 1),
        "pss_mb_models": round(peak - before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_mb_models": round(peak_rss_mb() - rss_before, 1),
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The figures of a group of rows (see the module's docstring)."""
    chars = sum(r["chars"] for r in rows)
    words = sum(r["words"] for r in rows)
    out = {"images": len(rows)}
    if chars:
        out |= {
            "cer": round(sum(r["errors"] for r in rows) / chars, 4),
            "word_acc": round(sum(r["words_found"] for r in rows) / words, 4),
            "lines_missed": round(
                sum(r["lines_missed"] for r in rows) / sum(r["lines"] for r in rows), 4
            ),
        }
    else:
        out["false_text"] = sum(1 for r in rows if r["read"])
        out["false_chars"] = sum(len(" ".join(r["read"])) for r in rows)
    out["cpu_ms"] = round(float(np.mean([r["cpu_ms"] for r in rows])), 1)
    return out


def report(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    parts = {
        p: summary([r for r in rows if r["part"] == p])
        for p in PARTS
        if any(r["part"] == p for r in rows)
    }
    conditions = {
        c: summary([r for r in rows if r["condition"] == c and r["part"] == "heldout"])
        for c in CONDITIONS
        if any(r["condition"] == c and r["part"] == "heldout" for r in rows)
    }
    memory = {k: v for k, v in result.items() if k.startswith(("pss_mb", "peak_rss"))}
    return {"parts": parts, "heldout_by_condition": conditions, **memory}


# --------------------------------------------------------------------------- make bench


def bench_figures(model_dir: Path, min_confidence: float) -> dict[str, float]:
    """`make bench`'s OCR figures, in this process: the held-out part and the photos without
    text, through the eyes' model."""
    result = measure(model_dir, ("heldout", "notext"), [], min_confidence)
    parts = report(result)["parts"]
    rows = result["rows"]
    return {
        "ocr_cer_heldout": parts["heldout"]["cer"],
        "ocr_word_acc_heldout": parts["heldout"]["word_acc"],
        "ocr_false_text_images": parts["notext"]["false_text"],
        "ocr_ms_per_image": round(float(np.mean([r["wall_ms"] for r in rows])), 1),
    }


# --------------------------------------------------------------------------- CLI


def demo_config() -> Config:
    from pendant.core.config import load_config

    return load_config(str(REPO / "examples" / "pendant.toml"))


def _model_dirs(names: list[str]) -> dict[str, Path]:
    """`NAME` (a manifest model, from the cache) or `LABEL=DIR`; default every OCR model."""
    from pendant.core.model_cache import load_manifest, model_path

    config = demo_config()
    names = names or [n for n, spec in sorted(load_manifest().items()) if spec.task == "ocr"]
    out = {}
    for name in names:
        label, _, folder = name.partition("=")
        out[label] = Path(folder) if folder else model_path(config, name)
        if folder and not (Path(folder) / "rec.onnx").is_file():
            raise SetError(
                f"--model {name}: {folder} has no rec.onnx (det.onnx, rec.onnx, cls.onnx)"
            )
    return out


def _env() -> dict[str, str]:
    """The worker's environment: this checkout's pendant, unless PYTHONPATH names another (an
    older checkout's, to measure the reader as it was)."""
    return {"PYTHONPATH": str(REPO / "device"), **os.environ}


def _print(label: str, rep: dict[str, Any]) -> None:
    print(
        f"{label}: PSS {rep['pss_mb']} MB ({rep['pss_mb_models']} MB over the bare worker), "
        f"peak RSS {rep['peak_rss_mb']} MB ({rep['peak_rss_mb_models']} MB over the bare worker)"
    )
    for part, fig in rep["parts"].items():
        print(f"  {part:>8}: " + ", ".join(f"{k} {v}" for k, v in fig.items()))
    for cond, fig in rep["heldout_by_condition"].items():
        print(
            f"    heldout {cond:>8}: cer {fig['cer']}, word_acc {fig['word_acc']}, "
            f"lines_missed {fig['lines_missed']}"
        )


def main() -> int:
    from pendant.core.errors import PendantError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="NAME|LABEL=DIR",
        help="a model of the manifest, or a folder with det/rec/cls.onnx (repeat)",
    )
    parser.add_argument("--part", action="append", choices=PARTS, help="default: all")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a constant of pendant.eyes.ocr (tune on the tune part)",
    )
    parser.add_argument(
        "--min-confidence",
        type=float,
        metavar="P",
        help="the reader's threshold (default: eyes.ocr_min_confidence)",
    )
    parser.add_argument("--out", type=Path, help="write every reading and figure as JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="print what each image read")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = tuple(args.part or PARTS)
    try:
        if args.worker:
            json.dump(measure(args.worker, parts, args.set, args.min_confidence), sys.stdout)
            return 0
        min_confidence = args.min_confidence
        if min_confidence is None:
            min_confidence = demo_config().eyes.ocr_min_confidence
        everything = {}
        for label, folder in _model_dirs(args.model).items():
            cmd = [sys.executable, __file__, "--worker", str(folder)]
            cmd += [f"--part={p}" for p in parts] + [f"--set={s}" for s in args.set]
            cmd += [f"--min-confidence={min_confidence}"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
            if done.returncode != 0:
                print(
                    f"error: {label}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}",
                    file=sys.stderr,
                )
                return 2
            result = json.loads(done.stdout)
            rep = report(result)
            _print(label, rep)
            if args.verbose:
                for r in result["rows"]:
                    print(f"    {r['name']}: {r['errors']}/{r['chars']} {r['read']}")
            everything[label] = {**rep, "rows": result["rows"], "settings": args.set}
        if args.out:
            args.out.write_text(json.dumps(everything, indent=1) + "\n")
        return 0
    except (SetError, PendantError) as exc:  # a font missing, a model the reader refuses
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    if "PYTHONPATH" not in os.environ:
        sys.path.insert(0, str(REPO / "device"))
    raise SystemExit(main())
