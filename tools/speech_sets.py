"""Render the spoken test cases to noisy 16 kHz WAV files with espeak-ng.

    python tools/speech_sets.py OUTDIR [--demo]

For every case in ``tests/support/speech_cases.py`` and every voice in :data:`VOICES` this writes
``OUTDIR/cmd_NNN_<voice>_<words>.wav``: 0.5 s of room noise, the speech, 1.0 s of room noise,
with the noise mixed at an SNR between 10 and 20 dB chosen deterministically per file. It also
writes the non-command sentences (``nc_...wav``), ``silence.wav`` (10 s of digital near-silence
with a one-LSB dither), ``noise.wav`` (10 s of room noise) and ``manifest.json``.
With ``--demo`` it adds ``demo.wav`` (one stream of about a dozen commands between silences,
room noise and ordinary talk) and ``demo.json`` (the expected intents in order, with the time
each command's speech ends).

The audio is test data made at set-up time, into a cache directory outside git; the device
package never writes audio. A second run with the same cases and generator version is a cache
hit and writes nothing. Everything is deterministic: the same inputs give the same bytes on the
same espeak-ng and soxr.

From Python::

    from speech_sets import generate          # with tools/ on sys.path
    manifest_path = generate(Path("/tmp/speech"), demo=True)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soxr

log = logging.getLogger(__name__)

GENERATOR_VERSION = "2"
RATE_HZ = 16_000
ESPEAK_RATE_HZ = 22_050
LEAD_S = 0.5
TAIL_S = 1.0
SNR_RANGE_DB = (10.0, 20.0)
SPEECH_RMS_DBFS = -24.0  # speech level before the per-file +-3 dB variation
NOISE_RMS_DBFS = -42.0  # level of noise.wav and of the demo's noisy gaps
BACKGROUND_S = 10.0
MANIFEST = "manifest.json"
DEMO_WAV = "demo.wav"
DEMO_JSON = "demo.json"

_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (language plus optional ``+variant``) at a speed in words per minute."""

    id: str
    espeak: str
    speed_wpm: int


VOICES: tuple[Voice, ...] = (
    Voice("us150", "en-us", 150),
    Voice("gbf170", "en-gb+f3", 170),
    Voice("usm130", "en-us+m3", 130),
)

# The demo stream, in order: case texts from speech_cases.CASES, and "#n" for NON_COMMANDS[n].
DEMO_SCRIPT: tuple[str, ...] = (
    "turn on the lights in the kitchen",
    "set a timer for five minutes",
    "what time is it",
    "#0",
    "set the bed light to fifty percent",
    "what's the weather in new york",
    "turn off the tv",
    "find my phone",
    "#1",
    "is the front door locked",
    "add milk to my shopping list",
    "pause the timer",
    "set the kitchen lights to blue",
    "#3",
    "close the sliding door",
)


def load_cases() -> ModuleType:
    """Import ``tests/support/speech_cases.py`` by path (``tests`` is not an installed package)."""
    path = _REPO / "tests" / "support" / "speech_cases.py"
    spec = importlib.util.spec_from_file_location("_pendant_speech_cases", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load speech cases from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module while being created
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- signal helpers


def _rng(*key: object) -> np.random.Generator:
    """A generator seeded from ``key``: the same file always gets the same random choices."""
    text = ":".join([GENERATOR_VERSION, *map(str, key)])
    return np.random.default_rng(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _db_to_amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def room_noise(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS room noise: a mix of pink (1/f) and brown (1/f^2) noise, rolled off below
    ~40 Hz (no DC drift) and above ~5 kHz (rooms and mics lose the top), shaped in the FFT."""
    n_fft = max(2, n_samples)
    freqs_hz = np.fft.rfftfreq(n_fft, 1.0 / RATE_HZ)
    f = np.maximum(freqs_hz, 1.0)
    spectrum = rng.standard_normal(freqs_hz.size) + 1j * rng.standard_normal(freqs_hz.size)
    highpass = (f / 40.0) ** 2 / (1.0 + (f / 40.0) ** 2)
    lowpass = 1.0 / np.sqrt(1.0 + (f / 5000.0) ** 4)
    shaped = []
    for exponent in (0.5, 1.0):  # amplitude 1/f^0.5 is pink, 1/f is brown
        part = np.fft.irfft(spectrum * highpass * lowpass / f**exponent, n_fft)[:n_samples]
        shaped.append(part / (_rms(part) or 1.0))
    brown_share = rng.uniform(0.3, 0.7)
    mix = np.sqrt(1.0 - brown_share) * shaped[0] + np.sqrt(brown_share) * shaped[1]
    return (mix / (_rms(mix) or 1.0)).astype(np.float32)


def dither(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Triangular dither of about one LSB: digital near-silence, not exact zeros."""
    return ((rng.random(n_samples) - rng.random(n_samples)) / 32768.0).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray) -> None:
    """Write float audio in [-1, 1] as 16-bit mono at :data:`RATE_HZ` (via a temp file)."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE_HZ)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Read a 16-bit mono WAV as float32 in [-1, 1], with its rate in Hz."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected 16-bit mono")
        frames = w.readframes(w.getnframes())
        rate_hz = w.getframerate()
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0, rate_hz


def speak(text: str, voice: Voice) -> np.ndarray:
    """Render ``text`` with espeak-ng, resample to 16 kHz, trim the leading and trailing
    silence; float32 at its natural level."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install espeak-ng")
    with tempfile.TemporaryDirectory(prefix="speech_sets_") as tmp:
        out = Path(tmp) / "speech.wav"
        subprocess.run(
            [espeak, "-v", voice.espeak, "-s", str(voice.speed_wpm), "-w", str(out), "--", text],
            check=True,
            capture_output=True,
        )
        audio, rate_hz = read_wav(out)
    if rate_hz != RATE_HZ:
        audio = soxr.resample(audio, rate_hz, RATE_HZ, quality="HQ").astype(np.float32)
    loud = np.flatnonzero(np.abs(audio) > 0.01 * float(np.max(np.abs(audio), initial=1e-9)))
    if loud.size == 0:
        raise RuntimeError(f"espeak-ng produced no speech for {text!r} with {voice}")
    margin = int(0.01 * RATE_HZ)
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


def noisy_utterance(
    speech: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float, float]:
    """Place ``speech`` between :data:`LEAD_S` and :data:`TAIL_S` of room noise at an SNR drawn
    from :data:`SNR_RANGE_DB` (against the speech RMS). Returns (audio, snr_db, speech_s)."""
    snr_db = round(float(rng.uniform(*SNR_RANGE_DB)), 1)
    level = _db_to_amp(SPEECH_RMS_DBFS + rng.uniform(-3.0, 3.0))
    speech = speech * (level / (_rms(speech) or 1.0))
    lead, tail = int(LEAD_S * RATE_HZ), int(TAIL_S * RATE_HZ)
    noise = room_noise(lead + speech.size + tail, rng) * (level / _db_to_amp(snr_db))
    audio = noise.copy()
    audio[lead : lead + speech.size] += speech
    peak = float(np.max(np.abs(audio)))
    if peak > 0.95:  # scale both together: the SNR stays as chosen
        audio *= 0.95 / peak
    return audio.astype(np.float32), snr_db, speech.size / RATE_HZ


# --------------------------------------------------------------------------- the sets


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48]


@dataclass(frozen=True)
class _Job:
    file: str
    kind: str  # "command" | "non_command"
    text: str
    intent: str | None
    slots: dict[str, str | int]
    voice: Voice


def _jobs(cases: ModuleType) -> list[_Job]:
    jobs: list[_Job] = []
    for i, case in enumerate(cases.CASES):
        for voice in VOICES:
            name = f"cmd_{i:03d}_{voice.id}_{_slug(case.text)}.wav"
            jobs.append(_Job(name, "command", case.text, case.intent, dict(case.slots), voice))
    for i, text in enumerate(cases.NON_COMMANDS):
        for voice in VOICES:
            name = f"nc_{i:02d}_{voice.id}_{_slug(text)}.wav"
            jobs.append(_Job(name, "non_command", text, None, {}, voice))
    return jobs


def _render(outdir: Path, job: _Job) -> dict[str, Any]:
    audio, snr_db, speech_s = noisy_utterance(speak(job.text, job.voice), _rng(job.file))
    write_wav(outdir / job.file, audio)
    return {
        "file": job.file,
        "kind": job.kind,
        "text": job.text,
        "intent": job.intent,
        "slots": job.slots,
        "voice": job.voice.id,
        "espeak_voice": job.voice.espeak,
        "speed_wpm": job.voice.speed_wpm,
        "snr_db": snr_db,
        "speech_start_s": LEAD_S,
        "speech_end_s": round(LEAD_S + speech_s, 4),
        "duration_s": round(audio.size / RATE_HZ, 4),
        "num_samples": int(audio.size),
    }


def content_hash(cases: ModuleType, demo: bool = False) -> str:
    """Hash of everything the output depends on: cases, voices, constants, generator version."""
    payload = {
        "version": GENERATOR_VERSION,
        "cases": [asdict(c) for c in cases.CASES],
        "non_commands": list(cases.NON_COMMANDS),
        "voices": [asdict(v) for v in VOICES],
        "constants": [RATE_HZ, LEAD_S, TAIL_S, SNR_RANGE_DB, SPEECH_RMS_DBFS, NOISE_RMS_DBFS],
        "demo_script": list(DEMO_SCRIPT) if demo else None,
    }
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _is_current(json_path: Path, digest: str, files: Sequence[str] = ()) -> bool:
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False
    names = [*files, *(f["file"] for f in data.get("files", []))]
    return data.get("hash") == digest and all((json_path.parent / n).is_file() for n in names)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _background_entry(file: str, kind: str) -> dict[str, Any]:
    return {
        "file": file,
        "kind": kind,
        "text": "",
        "intent": None,
        "slots": {},
        "voice": None,
        "snr_db": None,
        "duration_s": BACKGROUND_S,
        "num_samples": int(BACKGROUND_S * RATE_HZ),
    }


def generate_sets(outdir: Path, cases: ModuleType) -> Path:
    """Write the per-utterance files and ``manifest.json`` unless they are current."""
    manifest = outdir / MANIFEST
    digest = content_hash(cases)
    if _is_current(manifest, digest):
        log.info("speech set in %s is current (%s)", outdir, digest[:12])
        return manifest
    manifest.unlink(missing_ok=True)  # a half-written set must never look current
    started = time.monotonic()
    jobs = _jobs(cases)
    with ThreadPoolExecutor(max_workers=_workers()) as pool:  # espeak-ng runs in subprocesses
        entries = list(pool.map(lambda job: _render(outdir, job), jobs))
    write_wav(outdir / "silence.wav", dither(int(BACKGROUND_S * RATE_HZ), _rng("silence")))
    noise = room_noise(int(BACKGROUND_S * RATE_HZ), _rng("noise")) * _db_to_amp(NOISE_RMS_DBFS)
    write_wav(outdir / "noise.wav", noise)
    entries += [
        _background_entry("silence.wav", "silence"),
        _background_entry("noise.wav", "noise"),
    ]
    _write_json(
        manifest,
        {
            "version": GENERATOR_VERSION,
            "hash": digest,
            "sample_rate_hz": RATE_HZ,
            "voices": [asdict(v) for v in VOICES],
            "files": entries,
        },
    )
    log.info("wrote %d files to %s in %.1f s", len(entries), outdir, time.monotonic() - started)
    return manifest


def generate_demo(outdir: Path, cases: ModuleType) -> Path:
    """Write ``demo.wav`` and ``demo.json`` unless they are current; returns the JSON path."""
    demo_json = outdir / DEMO_JSON
    digest = content_hash(cases, demo=True)
    if _is_current(demo_json, digest, [DEMO_WAV]):
        return demo_json
    demo_json.unlink(missing_ok=True)
    by_text = {c.text: c for c in cases.CASES}
    rng = _rng("demo")
    items = []
    for i, ref in enumerate(DEMO_SCRIPT):
        voice = VOICES[i % len(VOICES)]
        if ref.startswith("#"):
            items.append((cases.NON_COMMANDS[int(ref[1:])], None, voice))
        else:
            items.append((ref, by_text[ref], voice))  # KeyError: DEMO_SCRIPT names a lost case
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        speech = list(pool.map(lambda item: speak(item[0], item[2]), items))

    parts: list[np.ndarray] = [dither(int(2.0 * RATE_HZ), rng)]
    offset = parts[0].size
    commands: list[dict[str, Any]] = []
    non_commands: list[dict[str, Any]] = []
    for n, ((text, case, voice), spoken) in enumerate(zip(items, speech, strict=True)):
        if n:  # a gap: near-silence or room noise, in turn
            gap = int(rng.uniform(1.5, 3.0) * RATE_HZ)
            quiet = n % 2 == 0
            bed = room_noise(gap, rng) * _db_to_amp(NOISE_RMS_DBFS)
            parts.append(dither(gap, rng) if quiet else bed)
            offset += gap
        audio, snr_db, speech_s = noisy_utterance(spoken, rng)
        start_s = (offset + LEAD_S * RATE_HZ) / RATE_HZ
        entry = {
            "text": text,
            "voice": voice.id,
            "snr_db": snr_db,
            "speech_start_s": round(start_s, 4),
            "speech_end_s": round(start_s + speech_s, 4),
        }
        if case is None:
            non_commands.append(entry)
        else:
            commands.append({"intent": case.intent, "slots": dict(case.slots), **entry})
        parts.append(audio)
        offset += audio.size
    parts.append(dither(int(2.0 * RATE_HZ), rng))
    stream = np.concatenate(parts)
    write_wav(outdir / DEMO_WAV, stream)
    _write_json(
        demo_json,
        {
            "version": GENERATOR_VERSION,
            "hash": digest,
            "file": DEMO_WAV,
            "sample_rate_hz": RATE_HZ,
            "duration_s": round(stream.size / RATE_HZ, 4),
            "num_samples": int(stream.size),
            "commands": commands,
            "non_commands": non_commands,
        },
    )
    return demo_json


def generate(outdir: Path, demo: bool = False) -> Path:
    """Generate (or reuse) the speech set in ``outdir``; with ``demo`` also the demo stream.

    Returns the path of ``manifest.json``. Cheap when the set is current.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    cases = load_cases()
    manifest = generate_sets(outdir, cases)
    if demo:
        generate_demo(outdir, cases)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="cache directory for the WAVs and manifest")
    parser.add_argument("--demo", action="store_true", help="also write demo.wav and demo.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.monotonic()
    manifest = generate(args.outdir, demo=args.demo)
    print(f"{manifest} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
