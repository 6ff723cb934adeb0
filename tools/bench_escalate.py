"""Asking a bigger model (issue 18): the ears' open-vocabulary transcription, as `make bench`
measures it.

The ears' recogniser process (`pendant.ears.asr.worker.RecognizerProcess`) with
`escalate.enabled`, which loads Whisper base beside the closed-set recogniser, writes down the
shared recordings of `../shared/testdata/speech-en` (each file's name is what was said; the
`oov_*` files, whose words nobody wrote down, are left out):

- escalate_wer_speech_en: word error rate, in the recogniser's words (`normalize`: case,
  punctuation, digits as words); the issue's goal is at most 0.10;
- escalate_wer_questions_espeak: the same on QUESTIONS, everyday questions no closed set holds,
  spoken by the four espeak-ng voices of QUESTION_VOICES: a set nothing was tuned on (the
  recordings are commands, and chose Whisper's settings);
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


QUESTIONS = (
    "what's a good substitute for eggs in a cake",
    "add a reminder to call mum at six",
    "how long should I boil an egg",
    "what is the capital of Australia",
    "how many grams are in a cup of flour",
    "tell me a joke about penguins",
    "what does this label say about allergens",
    "is it going to rain tomorrow afternoon",
    "how far is the moon from the earth",
    "who wrote the book Pride and Prejudice",
    "what time does the pharmacy close today",
    "convert twenty degrees Celsius to Fahrenheit",
    "what should I cook for dinner tonight",
    "how do I get a red wine stain out of a carpet",
    "remind me to water the plants on Sunday",
    "what is the square root of one hundred and forty four",
    "how many days until Christmas",
    "can you recommend a good podcast about history",
    "what is the difference between baking soda and baking powder",
    "why is the sky blue",
    "how do you say thank you in Japanese",
    "what's the best way to store fresh herbs",
    "how many calories are in a banana",
    "when was the Eiffel Tower built",
    "what is the weather like in London this weekend",
)
QUESTION_VOICES = (
    ("us150", "en-us", 150),
    ("gbf170", "en-gb+f3", 170),
    ("usm130", "en-us+m3", 130),
    ("sc160", "en-gb-scotland", 160),
)


def _spoken_questions() -> list[tuple[np.ndarray, str]]:
    """QUESTIONS in each of QUESTION_VOICES, as int16 at 16 kHz with what was said."""
    sys.path.insert(0, str(REPO / "tools"))
    import speech_sets

    spoken = []
    for voice in QUESTION_VOICES:
        for question in QUESTIONS:
            audio = speech_sets.speak(question, speech_sets.Voice(*voice))
            spoken.append(((audio * 32767).clip(-32768, 32767).astype(np.int16), question))
    return spoken


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
            spoken = [(_read(path), path.stem) for path in files]
            questions = _spoken_questions()
            tally = {"speech_en": [0, 0], "questions": [0, 0]}
            cpu_s = 0.0
            for part, audio, said in [("speech_en", *s) for s in spoken] + [
                ("questions", *q) for q in questions
            ]:
                before = _cpu_s(recognizer.pid)
                heard = asyncio.run(recognizer.transcribe_open(audio)) or ""
                if part == "speech_en":
                    cpu_s += _cpu_s(recognizer.pid) - before
                wrong, n = word_errors(heard, said)
                tally[part][0] += wrong
                tally[part][1] += n
            peak = _peak_mb(recognizer.pid)
        finally:
            recognizer.close()
    errors, words = tally["speech_en"]
    q_errors, q_words = tally["questions"]
    q_wer = round(q_errors / q_words, 4)
    wer = round(errors / words, 4)
    ms = round(1000 * cpu_s / len(files), 1)
    sets = ", ".join(sorted({p.parent.name for p in files}))
    print(
        f"escalate: WER {wer:.1%} ({errors}/{words} words) on {len(files)} recordings of "
        f"{speech} ({sets}), {ms:.0f} CPU ms an utterance, recogniser {peak:.0f} MB peak "
        f"(escalate off: {off_peak:.0f} MB); WER {q_wer:.1%} ({q_errors}/{q_words} words) on "
        f"{len(questions)} questions spoken by espeak-ng",
        flush=True,
    )
    return {
        "escalate_wer_speech_en": wer,
        "escalate_wer_set": f"{speech.name} ({sets}; {len(files)} files, oov_* left out)",
        "escalate_wer_questions_espeak": q_wer,
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
