"""Asking a bigger model (issue 18): the ears' open-vocabulary transcription, as `make bench`
measures it.

The ears' recogniser process (`pendant.ears.asr.worker.RecognizerProcess`) with
`escalate.enabled`, which loads Whisper base beside the closed-set recogniser, writes down the
shared recordings of `../shared/testdata/speech-en` (each file's name is what was said; the
`oov_*` files, whose words nobody wrote down, are left out):

- escalate_wer_speech_en: word error rate, in the recogniser's words (`normalize`: case,
  punctuation, digits as words); the issue's goal is at most 0.10;
- escalate_cpu_ms_per_utterance: the recogniser process's CPU time per file, on this machine;
- escalate_recognizer_peak_rss_mb / escalate_off_recognizer_peak_rss_mb: that process's peak
  resident set with escalate on (Whisper loaded, after the transcriptions) and off.

    python tools/bench_escalate.py [--config examples/pendant.toml]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from pendant.core.asking import edit_distance
from pendant.core.config import Config, load_config
from pendant.core.errors import PendantError
from pendant.core.names import normalize
from pendant.ears.asr.worker import RecognizerProcess
from pendant.ears.understand.grammar_build import compile_grammar

REPO = Path(__file__).resolve().parents[1]
SPEECH = REPO.parent / "shared" / "testdata" / "speech-en"


def word_errors(heard: str, said: str) -> tuple[int, int]:
    """Word edits from `said` to `heard`, and the number of words said."""
    a = normalize(said)
    return edit_distance(a, normalize(heard)), len(a)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024, 1)


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _started(config: Config, enabled: bool, cache: Path) -> RecognizerProcess:
    escalate = config.escalate.model_copy(
        update={"enabled": enabled, "url": config.escalate.url or "http://homeassistant.local"}
    )
    config = config.model_copy(update={"escalate": escalate})
    recognizer = RecognizerProcess(config, compile_grammar(config, cache))
    recognizer.wait_ready()
    return recognizer


def escalate_figures(config: Config, speech: Path = SPEECH) -> dict[str, Any]:
    """The figures above; {} (with the reason printed) when the recordings, faster-whisper or
    the whisper-base model are not here."""
    files = sorted(f for f in speech.rglob("*.wav") if not f.stem.startswith("oov_"))
    if not files:
        print(f"escalate: skipped, no recordings in {speech}", flush=True)
        return {}
    with tempfile.TemporaryDirectory(prefix="bench-escalate-") as cache:
        off = _started(config, False, Path(cache))
        off_peak = _peak_mb(off.pid)
        off.close()
        try:
            recognizer = _started(config, True, Path(cache))
        except PendantError as exc:
            print(f"escalate: skipped, {exc}", flush=True)
            return {}
        try:
            errors = words = 0
            cpu_s = 0.0
            for path in files:
                audio = _read(path)
                before = _cpu_s(recognizer.pid)
                heard = asyncio.run(recognizer.transcribe_open(audio)) or ""
                cpu_s += _cpu_s(recognizer.pid) - before
                wrong, said = word_errors(heard, path.stem)
                errors, words = errors + wrong, words + said
            peak = _peak_mb(recognizer.pid)
        finally:
            recognizer.close()
    wer = round(errors / words, 4)
    ms = round(1000 * cpu_s / len(files), 1)
    sets = ", ".join(sorted({p.parent.name for p in files}))
    print(
        f"escalate: WER {wer:.1%} ({errors}/{words} words) on {len(files)} recordings of "
        f"{speech} ({sets}), {ms:.0f} CPU ms an utterance, recogniser {peak:.0f} MB peak "
        f"(escalate off: {off_peak:.0f} MB)",
        flush=True,
    )
    return {
        "escalate_wer_speech_en": wer,
        "escalate_wer_set": f"{speech.name} ({sets}; {len(files)} files, oov_* left out)",
        "escalate_cpu_ms_per_utterance": ms,
        "escalate_recognizer_peak_rss_mb": peak,
        "escalate_off_recognizer_peak_rss_mb": off_peak,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "pendant.toml")
    parser.add_argument("--speech", type=Path, default=SPEECH)
    args = parser.parse_args()
    print(json.dumps(escalate_figures(load_config(args.config), args.speech), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
