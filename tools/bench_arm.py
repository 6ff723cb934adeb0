"""`make bench-arm`: an estimate of the ears' and eyes' cost on a Pi Zero 2 W and a Pi 5, from
aarch64 emulation.

Not a measurement on a Pi. The ears run on aarch64 under QEMU's user-mode emulation
(`qemu-aarch64`, Debian's qemu-user): Debian bookworm's arm64 CPython 3.11 (the Zero 2 W
image's), with the aarch64 wheels the lock pins for the Zero 2 W (the ones `make deb` bundles)
and the pendant from this checkout. A small TCG plugin (tools/arm/insn_count.c) counts the
guest instructions executed; the guest marks the start and end of each piece of work
(tools/arm/guest.py), so interpreter start-up, imports and model loading are outside every
figure. Counted:

- per utterance: the recogniser (`--backend`, by default the config's: pocketsphinx on the
  home's closed set) decoding a few fixed spoken commands, and the intent parser on what it
  heard, as the ears do once the VAD has cut an utterance out;
- per minute of listening to silence, to room noise, to commands (the demo stream) and to
  talk (the espeak-ng set's non-commands back to back: what conversation mode hears most): the
  listener loop (webrtcvad, Silero, the segmenter, early and final recognition), as
  `make bench` measures "listening to silence", but fed from memory as fast as it takes it.

A backend with an extra in pyproject.toml (whisper) has that extra's locked aarch64 wheels added
to the guest's.

Three more parts (`--parts`; all four by default), each its own guest process, so the start of
a short-lived process is counted apart:

- read: "read this" as the eyes' reader does it (tools/arm/guest_read.py): the face guard, the
  OCR models loaded one at a time (text detection, direction, recognition) on each of the
  eyes' bundled demo images (tools/eyes_demo_images.py), as a Zero 2 W's Cortex-A53 and again
  as a Pi 5's Cortex-A76 (qemu's CPU model and /proc/cpuinfo both: the libraries pick their
  kernels by them). The reader's start (interpreter, imports, the face guard) is counted
  from exec and reported on its own: a cold capture pays it, one within eyes.linger_s not;
- ask: the ears' open-vocabulary transcription of a question (Whisper base int8 through
  faster-whisper and CTranslate2, the `whisper` extra's aarch64 wheels;
  tools/arm/guest_ask.py) on a few ../shared/testdata/speech-en recordings, as a Cortex-A76,
  one CTranslate2 thread; with the x86-measured rest of the path to Home Assistant's answer
  (ASK_X86_*) it gives the end of speech -> answer estimate on a Pi 5;
- speaker: the speaker check (tools/arm/guest_speaker.py): the GE2E voice encoder loaded as
  the ears load it on first need, then `embed` on each of the ears part's five speech-en
  commands, as `SpeakerCheck.accepts` does on an utterance; as a Cortex-A53 and a Cortex-A76
  (`--boards`), with the device's wheels (onnxruntime among them), one onnxruntime thread.

The Pi 5's guest is the same Debian bookworm python3.11 sysroot and the Zero 2 W's cp311
wheels: the Pi 5 image's trixie and CPython 3.13 are not emulated (another sysroot and wheel
set for a figure that the IPC assumption swamps).

Instructions become Zero 2 W time with an assumed IPC (instructions per cycle) for its
Cortex-A53 at 1 GHz: time = instructions / (IPC x 1 GHz). The A53 is a dual-issue in-order
core (at most 2 instructions a cycle); branchy interpreter code and cache misses keep it well
below that. IPC_ASSUMED is the central figure, IPC_RANGE the bounds the table also shows. An
emulator counts instructions exactly but knows nothing of caches or the pipeline: the time is
only as good as the IPC. The Pi 5's Cortex-A76 at 2.4 GHz has its own assumption
(PI5_IPC_ASSUMED, PI5_IPC_RANGE, PI5_IPC_NOTE), a judgement too.

Steps (each cached under .cache/bench-arm, shown with its time): the arm64 sysroot
(mmdebstrap --variant=extract, Debian's archive), the locked wheels (fetched once into
~/.cache/pendant/wheels, checked by the lock's sha256), the plugin (cc), the grammar (compiled
here; the guest reads it from the same cache), the audio (tools/speech_sets.py), an empty
interpreter run for reference, then the counted runs. Writes bench-arm-results.json (for a
backend other than the config's, bench-arm-results-BACKEND.json): the ears' `figures`, and
read_this_s_zero2w, read_this_s_pi5 (the median image, warm reader), read_this_cold_s_* (with
the reader's start), ask_transcribe_s_pi5 and ask_answer_s_pi5_est, each with a `_range` at the
IPC bounds, and speaker_embed_ms_zero2w, speaker_embed_ms_pi5 (the median recording),
speaker_load_s_* (the encoder's load on first need), each with a `_range` too. One bench-arm at
a time per checkout: the guests share .cache/bench-arm.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import tomllib
import wave
import zipfile
from pathlib import Path
from typing import Any

from pendant.ears.asr import BACKENDS

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".cache" / "bench-arm"
SPEECH_CACHE = REPO / ".cache" / "speech-sets"
SHARED_SPEECH = REPO.parent / "shared" / "testdata" / "speech-en" / "main"
CONFIG = REPO / "examples" / "pendant.toml"
SUITE = "bookworm"  # the Zero 2 W image's Debian (packaging/pendant.toml: zero2w-bookworm)
TARGET = "zero2w-bookworm"
MIRROR = "http://deb.debian.org/debian"
GUEST_PYTHON = "usr/bin/python3.11"

# Fixed commands from ../shared/testdata/speech-en/main (recordings of people, in the demo
# home); without it, espeak-ng renderings from tools/speech_sets.py.
SHARED_COMMANDS = [
    "lock the Front Door.wav",
    "set Bed Light brightness to 50 percent.wav",
    "is the Front Door locked.wav",
    "activate Mood Lighting.wav",
    "cancel all timers.wav",
]
ESPEAK_COMMANDS = 5  # the first five commands of the espeak-ng set, one voice
# The 10 s silence and noise files are played over and over for at least this long.
LISTEN_AT_LEAST_S = 60.0

CLOCK_HZ = 1.0e9  # the Zero 2 W's Cortex-A53 cores, at their stock 1 GHz
IPC_ASSUMED = 0.6
IPC_RANGE = (0.4, 1.0)
IPC_NOTE = (
    "assumed, not measured: the Cortex-A53 is a dual-issue in-order core, so at most 2 "
    "instructions a cycle (Arm, Cortex-A53 MPCore Processor Technical Reference Manual, "
    "DDI 0500); Arm publishes no IPC or DMIPS/MHz for it (the 2.3 DMIPS/MHz often quoted is "
    "unofficial). An interpreter's indirect branches and the recogniser's acoustic model, far "
    "bigger than the Zero 2 W's 32 KB L1 and 512 KB shared L2, keep an in-order core well "
    "below 1. 0.6 is a judgement, 0.4 and 1.0 the bounds shown beside it; every time scales "
    "with 1/IPC. One `perf stat -e instructions,cycles` on a real Zero 2 W replaces it."
)

# The Pi 5's cores, for "read this" and the open-vocabulary transcription of an `Ask`.
PI5_CLOCK_HZ = 2.4e9  # the Pi 5's Cortex-A76 cores (BCM2712), at their stock 2.4 GHz
PI5_IPC_ASSUMED = 1.5
PI5_IPC_RANGE = (1.0, 2.5)
PI5_IPC_NOTE = (
    "assumed, not measured: the Cortex-A76 decodes 4 instructions a cycle and dispatches up to "
    "8 micro-ops out of order into 8 execution ports, with a 128-entry window (AnandTech, "
    "'Arm's Cortex-A76 CPU Unveiled', 2018; Arm, Cortex-A76 Core Technical Reference "
    "Manual), so at most 4 a cycle; Arm gives no IPC, only +25 % integer and +35 % "
    "floating-point performance per clock over the A75 (itself 3-wide). Arm's own top-down "
    "example on an A76-class core (Neoverse N1 learning path) shows 0.22 on a memory-bound "
    "stride loop, so the range is wide. 1.5 is a judgement: 2.5x the A53's 0.6 for an "
    "out-of-order core twice as wide with 4x the L2 per core (512 KB) and a 2 MB L3; 1.0 and "
    "2.5 are the bounds shown. `perf stat -e instructions,cycles` on a Pi 5 replaces it."
)
# CPU models for qemu and /proc/cpuinfo: the core the libraries see picks their kernels
# (an A76 has the dot-product instructions that int8 kernels, Ruy's and onnxruntime's, can use).
CORES = {
    "zero2w": {"qemu": "cortex-a53", "part": "0xd03", "variant": "0x0", "revision": "4",
               "features": "fp asimd evtstrm crc32 cpuid"},
    "pi5": {"qemu": "cortex-a76", "part": "0xd0b", "variant": "0x4", "revision": "1",
            "features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
            "asimdrdm lrcpc dcpop asimddp"},
}  # fmt: skip

# Both boards have four cores. The "read this" guest is told so (qemu-user would show it this
# machine's), so its models take the threads they take on a Pi (`pendant.eyes.model_threads`;
# each read mark says how many), and the plugin counts each thread apart: the time is the
# critical path's.
BOARD_CORES = 4

# "read this": the eyes' bundled demo images (tools/eyes_demo_images.py), 640x480 labels.
READ_IMAGES = ["oat-milk.png", "platform.png", "note.png"]
EYES_IMAGES = REPO / "device" / "pendant" / "data" / "eyes"
# An `Ask`: questions and commands from ../shared/testdata/speech-en/main, written down with
# Whisper base as the ears do for a question (open_vocab.OpenTranscriber).
ASK_RECORDINGS = ["oov_2.wav", "oov_4.wav", "set a timer for 3 hours and 10 minutes.wav"]
# The rest of the path from the end of speech to Home Assistant's answer, measured on x86
# (README, "Asking": tools/bench_ask.py on 2026-12-07, quiet, n = 10: answer p50 0.99 s, the
# closed set's guess done at 0.49 s and Whisper's words at 0.96 s): 0.99 s less Whisper's
# 0.48 s. The hangover, the VAD, the closed set's guess, the link and Home Assistant's agent,
# none of which the Pi 5 would run much slower than this x86 (Home Assistant runs elsewhere).
ASK_X86_ANSWER_P50_S = 0.99
ASK_X86_WHISPER_S = 0.48

# The speaker check: the ears part's commands (recordings of one real person), each embedded
# as `SpeakerCheck.accepts` does before the recogniser's answer counts.
SPEAKER_RECORDINGS = SHARED_COMMANDS

# The guest's ears' cache folder, emptied before each counted run: a first start.
EARS_CACHE = WORK / "ears-cache"

MARK_RE = re.compile(r"^insn-mark (\d+) (\d+)$", re.M)
THREADS_RE = re.compile(r"^insn-threads (\d+)((?: \d+)+)$", re.M)
TOTAL_RE = re.compile(r"^insn-total (\d+)$", re.M)


class BenchError(Exception):
    """The bench cannot go on; the message names what to fix."""


# --------------------------------------------------------------------------- pure parts


def parse_plugin_log(text: str) -> tuple[dict[int, int], int | None]:
    """The plugin's counts: {mark id: instructions so far}, and the total at exit (or None)."""
    marks = {int(i): int(n) for i, n in MARK_RE.findall(text)}
    totals = TOTAL_RE.findall(text)
    return marks, int(totals[-1]) if totals else None


def parse_thread_counts(text: str) -> dict[int, list[int]]:
    """The plugin's counts per guest thread at each mark (its `threads` argument), or {}."""
    return {int(i): [int(n) for n in ns.split()] for i, ns in THREADS_RE.findall(text)}


def busiest(threads: dict[int, list[int]], at: int, until: int) -> int:
    """The instructions of the thread that ran most between two marks: the work on the
    critical path when the others ran beside it (they sleep while they wait: no spinning)."""
    a, b = threads[at], threads[until]
    a = a + [0] * (len(b) - len(a))
    return max(y - x for x, y in zip(a, b, strict=False))


def spans(
    marks: list[dict[str, Any]],
    counts: dict[int, int],
    threads: dict[int, list[int]] | None = None,
) -> list[dict[str, Any]]:
    """Each piece of work the guest marked (a mark and its `..._end`, possibly with others
    inside it: "read" holds "mask", "det", ...) with its instructions (all threads'), in the
    order the work started; `at` and `until` are its two marks' ids. With `threads` (the
    plugin's per-thread counts), also `main`, the guest's main thread's instructions (which
    marks, and runs what is not handed to a pool), and `busiest`, the busiest thread's."""
    out = []
    open_: list[dict[str, Any]] = []
    for m in marks:
        label = m["label"]
        if label.endswith("_end") and open_ and open_[-1]["label"] + "_end" == label:
            start = open_.pop()
            if start["id"] not in counts or m["id"] not in counts:
                raise BenchError(f"the plugin printed no count for mark {start['id']}/{m['id']}")
            info = {k: v for k, v in start.items() if k not in ("id", "label")}
            info.update({k: v for k, v in m.items() if k not in ("id", "label")})
            out.append(
                {"what": label.removesuffix("_end"), **info,
                 "insns": counts[m["id"]] - counts[start["id"]], "at": start["id"],
                 "until": m["id"]}
            )  # fmt: skip
            if threads and start["id"] in threads and m["id"] in threads:
                out[-1]["main"] = threads[m["id"]][0] - threads[start["id"]][0]
                out[-1]["busiest"] = busiest(threads, start["id"], m["id"])
        elif not label.endswith("_end"):
            open_.append(m)
    # Marks never closed ("start", "ready") are points, not work.
    return sorted(out, key=lambda w: w["at"])


def critical_path(span: dict[str, Any], work: list[dict[str, Any]]) -> int:
    """The instructions one after another in `span` when its steps ran on several threads:
    each outermost step inside it at its busiest thread's count, and the rest of the span at
    the main thread's (what it ran between the steps: Python, one thread). A lower bound: the
    busiest thread over a whole step, where the threads' shares may differ operator by
    operator. All of `span`'s instructions when the plugin did not count per thread."""
    if "busiest" not in span:
        return int(span["insns"])
    inside = [w for w in work if span["at"] < w["at"] and w["until"] < span["until"]]
    top = [
        w for w in inside if not any(o["at"] < w["at"] and w["until"] < o["until"] for o in inside)
    ]
    return int(sum(w["busiest"] for w in top) + span["main"] - sum(w["main"] for w in top))


def insns_to_ms(insns: float, ipc: float, clock_hz: float = CLOCK_HZ) -> float:
    """Time on one core: instructions / (IPC x clock)."""
    return insns / (ipc * clock_hz) * 1000


def core_pct(insns: float, audio_s: float, ipc: float, clock_hz: float = CLOCK_HZ) -> float:
    """Share of one core that keeps up with `audio_s` of audio costing `insns`."""
    return 100 * insns / (ipc * clock_hz * audio_s)


def figures(work: list[dict[str, Any]], ipc: float, ipc_range: tuple[float, float]) -> dict:
    """The results: instructions per utterance and per minute of listening, and Zero 2 W
    time (ms per utterance, % of one core listening) at the assumed IPC and its bounds."""
    lo, hi = ipc_range
    out: dict[str, Any] = {"utterances": [], "listening": {}}
    # An utterance: the recogniser's decode, then the parser on what it heard.
    for decode, parse in itertools.pairwise(work):
        if decode["what"] != "decode" or parse["what"] != "parse":
            continue
        insns = decode["insns"] + parse["insns"]
        out["utterances"].append(
            {
                "file": decode["file"],
                "audio_s": round(decode["audio_s"], 2),
                "heard": decode.get("text"),
                "intent": parse.get("intent"),
                "decode_insns": decode["insns"],
                "parse_insns": parse["insns"],
                "insns": insns,
                "zero2w_ms": round(insns_to_ms(insns, ipc)),
            }
        )
    utterances = out["utterances"]
    if utterances:
        median = statistics.median(u["insns"] for u in utterances)
        out["parse_share_pct"] = round(
            100 * sum(u["parse_insns"] for u in utterances) / sum(u["insns"] for u in utterances), 1
        )
        out["utterance_insns_median"] = round(median)
        out["utterance_zero2w_ms_median"] = round(insns_to_ms(median, ipc))
        out["utterance_zero2w_ms_median_range"] = [
            round(insns_to_ms(median, hi)),
            round(insns_to_ms(median, lo)),
        ]
    for w in work:
        if w["what"] != "listen":
            continue
        per_min = w["insns"] * 60 / w["audio_s"]
        out["listening"][w["kind"]] = {
            "file": w["file"],
            "audio_s": round(w["audio_s"], 1),
            "insns": w["insns"],
            "insns_per_min": round(per_min),
            "intents": w.get("intents", []),
            "utterances": w.get("utterances"),
            "zero2w_core_pct": round(core_pct(w["insns"], w["audio_s"], ipc), 2),
            "zero2w_core_pct_range": [
                round(core_pct(w["insns"], w["audio_s"], hi), 2),
                round(core_pct(w["insns"], w["audio_s"], lo), 2),
            ],
        }
    return out


def _seconds_at(insns: float, ipc: float, clock_hz: float) -> float:
    return round(insns_to_ms(insns, ipc, clock_hz) / 1000, 2)


def _timed(insns: float, ipc: float, ipc_range: tuple[float, float], clock_hz: float) -> dict:
    """`insns` as seconds on one core at the assumed IPC, and at the range's bounds (fast
    first)."""
    lo, hi = ipc_range
    return {
        "s": _seconds_at(insns, ipc, clock_hz),
        "s_range": [_seconds_at(insns, hi, clock_hz), _seconds_at(insns, lo, clock_hz)],
    }


PLATFORMS = {
    "zero2w": (CLOCK_HZ, IPC_ASSUMED, IPC_RANGE),
    "pi5": (PI5_CLOCK_HZ, PI5_IPC_ASSUMED, PI5_IPC_RANGE),
}


def read_figures(runs: dict[str, dict[str, Any]], ipc: float = IPC_ASSUMED) -> dict[str, Any]:
    """ "read this" on each board whose run is in `runs` ({"zero2w": {"work": [...],
    "ready_insns": N}, "pi5": ...}): per image, the eyes' look (`read_this_s_<board>`: the
    median), the reader's start (interpreter, imports, models, the face guard: what a cold
    capture adds) and the face guard loaded again after the answer (energy, not latency).
    The Zero 2 W's time at `ipc` (the A53's assumption, --ipc), the Pi 5's at its own; when
    the models ran on several threads (counted per thread), the time is the critical path's
    (`critical_path`) and the instructions, for the energy, all threads'."""
    out: dict[str, Any] = {}
    for board, run in runs.items():
        clock, board_ipc, ipc_range = PLATFORMS[board]
        board_ipc = ipc if board == "zero2w" else board_ipc
        reads = [w for w in run["work"] if w["what"] == "read"]
        prepares = [w for w in run["work"] if w["what"] == "prepare"]
        if not reads:
            continue
        median = statistics.median(w["insns"] for w in reads)
        # What a read's instructions went to (the guest marks the steps inside it): the
        # median share of each, over the images.
        parts: dict[str, list[float]] = {}
        for r in reads:
            inside = [w for w in run["work"] if r["at"] < w["at"] and w["until"] < r["until"]]
            summed: dict[str, float] = {}
            for w in inside:
                # Each step's own instructions: a model's load inside `rec` is the load's.
                nested = sum(
                    x["insns"] for x in inside if w["at"] < x["at"] and x["until"] < w["until"]
                )
                summed[w["what"]] = summed.get(w["what"], 0) + w["insns"] - nested
            if summed:
                summed["other"] = r["insns"] - sum(summed.values())
            for k, v in summed.items():
                parts.setdefault(k, []).append(v)
        breakdown = {k: round(statistics.median(v)) for k, v in parts.items()}
        start = run["ready_insns"]
        again = statistics.median(w["insns"] for w in prepares) if prepares else 0
        latency = statistics.median(critical_path(w, run["work"]) for w in reads)
        read = _timed(latency, board_ipc, ipc_range, clock)
        cold = _timed(start + latency, board_ipc, ipc_range, clock)
        out[board] = {
            "images": [
                {
                    "file": w["file"],
                    "insns": w["insns"],
                    "critical_path_insns": critical_path(w, run["work"]),
                    "text": w.get("text"),
                    "s": _seconds_at(critical_path(w, run["work"]), board_ipc, clock),
                }
                for w in reads
            ],
            "model_threads": reads[0].get("threads", 1),
            "read_insns_median": round(median),
            "read_critical_path_insns_median": round(latency),
            "read_breakdown_insns_median": breakdown,
            "reader_start_insns": start,
            "prepare_again_insns": round(again),
            # pendant prepare at boot, once (later boots find the copies): not a capture's.
            "models_prepared_insns": run.get("prepare_insns"),
            "ipc": board_ipc,
            "clock_hz": clock,
        }
        out[f"read_this_s_{board}"] = read["s"]
        out[f"read_this_s_{board}_range"] = read["s_range"]
        out[f"read_this_cold_s_{board}"] = cold["s"]
        out[f"read_this_cold_s_{board}_range"] = cold["s_range"]
        out[f"reader_start_s_{board}"] = _seconds_at(start, board_ipc, clock)
        if run.get("prepare_insns"):
            out[f"models_prepared_s_{board}"] = _seconds_at(run["prepare_insns"], board_ipc, clock)
        # The CPU one capture costs in all, the reader started for it (the power model's).
        out[f"read_this_capture_insns_{board}"] = round(start + median + again)
    return out


def ask_figures(work: list[dict[str, Any]], ready_insns: int) -> dict[str, Any]:
    """The open-vocabulary transcription of each recording on a Pi 5 (one core, its IPC),
    the median as `ask_transcribe_s_pi5`, and the end of speech -> answer estimate: the x86
    path's rest (ASK_X86_ANSWER_P50_S less ASK_X86_WHISPER_S) plus that median."""
    asks = [w for w in work if w["what"] == "ask"]
    if not asks:
        return {}
    clock, ipc, ipc_range = PLATFORMS["pi5"]
    median = statistics.median(w["insns"] for w in asks)
    t = _timed(median, ipc, ipc_range, clock)
    rest = ASK_X86_ANSWER_P50_S - ASK_X86_WHISPER_S
    return {
        "ask": {
            "recordings": [
                {
                    "file": w["file"],
                    "audio_s": round(w["audio_s"], 2),
                    "text": w.get("text"),
                    "insns": w["insns"],
                    "s": _seconds_at(w["insns"], ipc, clock),
                }
                for w in asks
            ],
            "transcribe_insns_median": round(median),
            "model_load_insns": ready_insns,
            "x86_rest_s": round(rest, 2),
        },
        "ask_transcribe_s_pi5": t["s"],
        "ask_transcribe_s_pi5_range": t["s_range"],
        "ask_model_load_s_pi5": _seconds_at(ready_insns, ipc, clock),
        "ask_answer_s_pi5_est": round(rest + t["s"], 2),
        "ask_answer_s_pi5_est_range": [round(rest + x, 2) for x in t["s_range"]],
    }


def speaker_figures(runs: dict[str, dict[str, Any]], ipc: float = IPC_ASSUMED) -> dict[str, Any]:
    """The speaker check on each board whose run is in `runs` ({"zero2w": {"work": [...],
    "ready_insns": N}, "pi5": ...}): an utterance's embedding (`speaker_embed_ms_<board>`: the
    median over the recordings) and the encoder's load on first need (`speaker_load_s_<board>`:
    the `load` span; `speaker_start_s_<board>` is from exec to `ready`, the load included with
    the interpreter and the imports, which the ears have already paid). The Zero 2 W's time at
    `ipc`, the Pi 5's at its own."""
    out: dict[str, Any] = {}
    for board, run in runs.items():
        clock, board_ipc, (lo, hi) = PLATFORMS[board]
        board_ipc = ipc if board == "zero2w" else board_ipc
        embeds = [w for w in run["work"] if w["what"] == "embed"]
        loads = [w for w in run["work"] if w["what"] == "load"]
        if not embeds:
            continue
        median = statistics.median(w["insns"] for w in embeds)
        load = loads[0]["insns"] if loads else 0
        out[board] = {
            "recordings": [
                {
                    "file": w["file"],
                    "audio_s": round(w["audio_s"], 2),
                    "embedded": w.get("embedded"),
                    "insns": w["insns"],
                    "ms": round(insns_to_ms(w["insns"], board_ipc, clock), 1),
                }
                for w in embeds
            ],
            "embed_insns_median": round(median),
            "load_insns": load,
            "start_insns": run["ready_insns"],
            "ipc": board_ipc,
            "clock_hz": clock,
        }
        out[f"speaker_embed_ms_{board}"] = round(insns_to_ms(median, board_ipc, clock), 1)
        out[f"speaker_embed_ms_{board}_range"] = [
            round(insns_to_ms(median, hi, clock), 1),
            round(insns_to_ms(median, lo, clock), 1),
        ]
        out[f"speaker_load_s_{board}"] = _seconds_at(load, board_ipc, clock)
        out[f"speaker_load_s_{board}_range"] = _timed(load, board_ipc, (lo, hi), clock)["s_range"]
        out[f"speaker_start_s_{board}"] = _seconds_at(run["ready_insns"], board_ipc, clock)
    return out


def more_table(results: dict[str, Any]) -> str:
    """The "read this", `Ask` and speaker check rows of the printed table (nothing when none
    ran)."""
    r = results.get("read", {})
    a = results.get("ask", {})
    v = results.get("speaker", {})
    lines: list[str] = []
    if r:
        lines += ["", f"Pi 5 estimate: Cortex-A76 at {PI5_CLOCK_HZ / 1e9:g} GHz, IPC "
                  f"{PI5_IPC_ASSUMED} assumed ({PI5_IPC_RANGE[0]}-{PI5_IPC_RANGE[1]} in brackets)",
                  "", f"{'read this (Minsn: all threads, critical path)':<46} {'all':>6} "
                  f"{'path':>6} {'s':>6}  (range)"]  # fmt: skip
        for board in ("zero2w", "pi5"):
            if board not in r:
                continue
            b = r[board]
            threads = b.get("model_threads", 1)
            for img in b["images"]:
                path = img.get("critical_path_insns", img["insns"])
                lines.append(
                    f"  {board:<7} {img['file']:<38} {img['insns'] / 1e6:>6.0f} "
                    f"{path / 1e6:>6.0f} {img['s']:>6.2f}"
                )
            a_, b_ = r[f"read_this_s_{board}_range"]
            path = b.get("read_critical_path_insns_median", b["read_insns_median"])
            lines.append(
                f"  {board:<7} {f'median, {threads} model thread(s)':<38} "
                f"{b['read_insns_median'] / 1e6:>6.0f} {path / 1e6:>6.0f} "
                f"{r[f'read_this_s_{board}']:>6.2f}  ({a_}-{b_})"
            )
            if b["read_breakdown_insns_median"]:
                lines.append(
                    "          of which (median Minsn, all threads): "
                    + ", ".join(
                        f"{k} {v / 1e6:.0f}" for k, v in b["read_breakdown_insns_median"].items()
                    )
                )
            a_, b_ = r[f"read_this_cold_s_{board}_range"]
            lines.append(
                f"  {board:<7} {'cold: + the reader start':<38} "
                f"{(b['reader_start_insns'] + b['read_insns_median']) / 1e6:>6.0f} "
                f"{(b['reader_start_insns'] + path) / 1e6:>6.0f} "
                f"{r[f'read_this_cold_s_{board}']:>6.2f}  ({a_}-{b_})"
            )
    if a:
        lines += ["", f"{'Ask on a Pi 5: Whisper base int8, one core':<46} {'Minsn':>8} {'s':>6}"]
        for rec in a["ask"]["recordings"]:
            name = f"{rec['file'][:32]} ({rec['audio_s']:.1f} s)"
            lines.append(f"  {name:<44} {rec['insns'] / 1e6:>8.0f} {rec['s']:>6.2f}")
        x, y = a["ask_transcribe_s_pi5_range"]
        lines.append(f"  {'median':<44} {a['ask']['transcribe_insns_median'] / 1e6:>8.0f} "
                     f"{a['ask_transcribe_s_pi5']:>6.2f}  ({x}-{y})")  # fmt: skip
        x, y = a["ask_answer_s_pi5_est_range"]
        lines.append(
            f"  end of speech -> answer: {a['ask']['x86_rest_s']} s of the x86 path (hangover, "
            f"link, Home Assistant) + the median = {a['ask_answer_s_pi5_est']} s ({x}-{y})"
        )
        lines.append(f"  model load, once at the ears' start: {a['ask_model_load_s_pi5']} s")
    if v:
        assumed = "; ".join(
            f"{board} IPC {v[board]['ipc']} at {v[board]['clock_hz'] / 1e9:g} GHz assumed "
            f"({PLATFORMS[board][2][0]}-{PLATFORMS[board][2][1]} in brackets)"
            for board in ("zero2w", "pi5")
            if board in v
        )
        lines += ["", f"speaker check, {assumed}",
                  f"{'an embedding (one core)':<46} {'Minsn':>8} {'ms':>7}"]  # fmt: skip
        for board in ("zero2w", "pi5"):
            if board not in v:
                continue
            b = v[board]
            for rec in b["recordings"]:
                name = f"{rec['file'][:28]} ({rec['audio_s']:.1f} s)"
                lines.append(
                    f"  {board:<7} {name:<36} {rec['insns'] / 1e6:>8.0f} {rec['ms']:>7.1f}"
                )
            x, y = v[f"speaker_embed_ms_{board}_range"]
            lines.append(
                f"  {board:<7} {'median':<36} {b['embed_insns_median'] / 1e6:>8.0f} "
                f"{v[f'speaker_embed_ms_{board}']:>7.1f}  ({x}-{y} ms)"
            )
            x, y = v[f"speaker_load_s_{board}_range"]
            lines.append(
                f"  {board:<7} encoder load on first need: {b['load_insns'] / 1e6:.0f} Minsn, "
                f"{v[f'speaker_load_s_{board}']} s ({x}-{y} s); from exec with the imports: "
                f"{v[f'speaker_start_s_{board}']} s"
            )
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    if "figures" not in results:  # only "read this", the Ask or the speaker check ran
        return more_table(results).lstrip("\n")
    ipc = results["ipc_assumed"]
    lo, hi = results["ipc_range"]
    f = results["figures"]
    lines = [
        f"Zero 2 W estimate: Cortex-A53 at {results['clock_hz'] / 1e9:g} GHz, IPC {ipc} "
        f"assumed ({lo}-{hi} in brackets); recogniser: {results.get('asr_backend')}",
        "",
        f"{'per utterance':<46} {'Minsn':>8} {'ms':>6}",
    ]
    for u in f["utterances"]:
        heard = f"{u['file'][:30]} ({u['audio_s']:.1f} s)"
        lines.append(f"  {heard:<44} {u['insns'] / 1e6:>8.0f} {u['zero2w_ms']:>6}")
    if "utterance_insns_median" in f:
        a, b = f["utterance_zero2w_ms_median_range"]
        lines.append(
            f"  {'median':<44} {f['utterance_insns_median'] / 1e6:>8.0f} "
            f"{f['utterance_zero2w_ms_median']:>6}  ({a}-{b} ms)"
        )
    if "parse_share_pct" in f:
        lines.append(f"  (the parser's share: {f['parse_share_pct']} %, the rest is the decode)")
    lines += ["", f"{'listening':<20} {'Minsn/min':>10} {'% of a core':>12}"]
    for kind, x in f["listening"].items():
        a, b = x["zero2w_core_pct_range"]
        lines.append(
            f"  {kind:<18} {x['insns_per_min'] / 1e6:>10.0f} {x['zero2w_core_pct']:>11.2f}%"
            f"  ({a:.2f}-{b:.2f} %)"
        )
    if "host_utterance_cpu_ms_median" in results and "utterance_zero2w_ms_median" in f:
        host = results["host_utterance_cpu_ms_median"]
        lines.append(
            f"\nthis machine ({results['host']}): {host} ms of CPU an utterance (median), "
            f"{f['utterance_zero2w_ms_median'] / max(host, 1):.0f}x less than the estimate"
        )
    lines.append(
        f"\ninterpreter start-up (empty run, not in any figure): "
        f"{results['empty_run_insns'] / 1e6:.0f} Minsn; imports and models before the first "
        f"mark: {results['setup_insns'] / 1e6:.0f} Minsn"
    )
    more = more_table(results)
    return "\n".join(lines) + ("\n" + more if more else "")


# --------------------------------------------------------------------------- the steps


def step(message: str) -> float:
    print(f"==> {message}", flush=True)
    return time.monotonic()


def done(started: float, detail: str = "") -> None:
    took = time.monotonic() - started
    print(f"    done in {took:.1f} s{(': ' + detail) if detail else ''}", flush=True)


def need(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BenchError(f"{tool} is missing: `make bench-arm` installs {package}")
    return found


def sysroot() -> Path:
    """Debian bookworm's arm64 CPython 3.11 and the libraries the wheels need, unpacked (no
    maintainer scripts run: qemu-user only needs the files)."""
    root = WORK / "root"
    if (root / GUEST_PYTHON).is_file():
        return root
    t = step(f"the arm64 sysroot: Debian {SUITE}'s python3.11 (mmdebstrap, under a minute)")
    tmp = WORK / "root.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        need("mmdebstrap", "mmdebstrap"), "--variant=extract", "--arch=arm64",
        "--include=python3.11,libstdc++6,libgomp1", SUITE, str(tmp), MIRROR,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise BenchError("mmdebstrap failed: " + " / ".join(tail))
    byte_compile(tmp / "usr" / "lib" / "python3.11")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    done(t, str(root))
    return root


def cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-3,6") as numbers."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def cpuinfo(cpus: list[int], core: str = "zero2w") -> str:
    """/proc/cpuinfo as a Zero 2 W's Cortex-A53 cores (Arm, part 0xd03) or a Pi 5's
    Cortex-A76 ones (part 0xd0b) would show it."""
    c = CORES[core]
    return "\n".join(
        f"processor\t: {i}\nBogoMIPS\t: {'38.40' if core == 'zero2w' else '108.00'}\n"
        f"Features\t: {c['features']}\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
        f"CPU variant\t: {c['variant']}\nCPU part\t: {c['part']}\nCPU revision\t: {c['revision']}\n"
        for i in cpus
    )


def core_root(root: Path, core: str) -> Path:
    """The sysroot as `core`'s guest sees it: the Zero 2 W's is the sysroot itself; another
    core's is a folder of links to it with a /proc of its own, so guests of two cores can run
    at once, each reading its own cpuinfo."""
    if core == "zero2w":
        return root
    view = WORK / f"root-{core}"
    view.mkdir(exist_ok=True)
    for entry in root.iterdir():
        link = view / entry.name
        if entry.name != "proc" and not link.is_symlink():
            link.symlink_to(entry)
    return view


def guest_proc(root: Path, core: str = "zero2w") -> None:
    """onnxruntime's cpuinfo reads /proc/cpuinfo, finds the host's x86 cores there (qemu 7.2
    passes it through for aarch64) and crashes at import. qemu-user looks a path up in the
    sysroot (-L) first, so an aarch64 cpuinfo there is what the guest reads; as many cores as
    /sys (which is the host's, and which it also reads) says are possible."""
    possible = Path("/sys/devices/system/cpu/possible").read_text()
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo(cpu_list(possible), core))


def byte_compile(directory: Path) -> None:
    """.pyc files beside the sources, as Debian's py3compile and pip leave them on a device:
    otherwise every run compiles the imports again (and lazy imports inside the counted work
    with them). This interpreter writes them when it is a 3.11 too (the same bytecode), else
    the guest does, on its first run."""
    if sys.version_info[:2] == (3, 11):
        cmd = [sys.executable, "-m", "compileall", "-q", "-j", "0", str(directory)]
        subprocess.run(cmd, capture_output=True, check=False)


def backend_extras(backend: str) -> list[str]:
    """The pyproject extra a recogniser needs beyond the device's wheels (whisper:
    ["whisper"]; the default's are the device's own)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [backend] if backend in project.get("optional-dependencies", {}) else []


def site_packages(extra: list[str]) -> Path:
    """The wheels the lock pins for the Zero 2 W (with the `extra` extras too), unpacked into
    one directory (one per set of extras)."""
    sys.path.insert(0, str(REPO / "packaging"))
    import build_deb  # packaging/build_deb.py: fetches and checks locked wheels
    import lock

    desc = tomllib.loads((REPO / "packaging" / "pendant.toml").read_text())
    extras = sorted({*desc["wheels"].get("extras", []), *extra})
    site = WORK / "-".join(["site", *sorted(extra)])
    stamp = site / ".lock-sha256"
    digest = f"{lock.digest()} {' '.join(extras)}"
    if stamp.is_file() and stamp.read_text() == digest:
        return site
    t = step(
        f"the locked aarch64 wheels for {TARGET}, extras {', '.join(extras)} (cached in "
        "~/.cache/pendant/wheels)"
    )
    target = next(x for x in lock.targets(desc) if x.name == TARGET)
    wheels = lock.wheels(target, extras)
    shutil.rmtree(site, ignore_errors=True)
    site.mkdir(parents=True)
    cache = build_deb.WHEELS_CACHE.expanduser()
    for wheel in wheels:
        path = build_deb.fetch_wheel(wheel, cache)
        with zipfile.ZipFile(path) as z:
            z.extractall(site)
        # A wheel's .data/purelib and platlib belong in site-packages itself.
        for data in site.glob("*.data"):
            for sub in ("purelib", "platlib"):
                if (data / sub).is_dir():
                    shutil.copytree(data / sub, site, dirs_exist_ok=True)
            shutil.rmtree(data)
    byte_compile(site)
    stamp.write_text(digest)
    done(t, f"{len(wheels)} wheels")
    return site


def plugin() -> Path:
    """tools/arm/insn_count.c, built for this machine's qemu."""
    src = REPO / "tools" / "arm" / "insn_count.c"
    lib = WORK / "libinsn_count.so"
    if lib.is_file() and lib.stat().st_mtime >= src.stat().st_mtime:
        return lib
    t = step("the instruction-count plugin (cc)")
    lib.parent.mkdir(parents=True, exist_ok=True)
    cmd = [need("cc", "gcc"), "-O2", "-Wall", "-shared", "-fPIC", "-o", str(lib), str(src)]
    subprocess.run(cmd, check=True)
    done(t)
    return lib


def grammar_cache() -> Path:
    """The closed set compiled here, once; the guest reads the same file."""
    from pendant.core.config import load_config
    from pendant.ears.understand.grammar import build_grammar

    cache = WORK / "grammar"
    cache.mkdir(parents=True, exist_ok=True)
    t = step("the closed set (compiled here, or read from the cache)")
    grammar = build_grammar(load_config(CONFIG), cache)
    done(t, f"{grammar.graph.n_states:,} states")
    return cache


def audio() -> tuple[list[Path], dict[str, Path]]:
    """The commands to decode and the streams to listen to."""
    sys.path.insert(0, str(REPO / "tools"))
    import speech_sets

    t = step("the audio (tools/speech_sets.py: espeak-ng, cached)")
    manifest = json.loads(Path(speech_sets.generate(SPEECH_CACHE, demo=True)).read_text())
    by_kind = {e["kind"]: SPEECH_CACHE / e["file"] for e in manifest["files"]}
    demo = json.loads((SPEECH_CACHE / "demo.json").read_text())
    talk = sorted(e["file"] for e in manifest["files"] if e["kind"] == "non_command")
    listen = {
        "silence": by_kind["silence"],
        "noise": by_kind["noise"],
        "speech": SPEECH_CACHE / demo["file"],
        "talk": talk_stream(talk),
    }
    if all((SHARED_SPEECH / name).is_file() for name in SHARED_COMMANDS):
        commands = [SHARED_SPEECH / name for name in SHARED_COMMANDS]
        source = str(SHARED_SPEECH)
    else:
        cmds = sorted(e["file"] for e in manifest["files"] if e["kind"] == "command")
        one_voice = [f for f in cmds if "_us150_" in f] or cmds
        commands = [SPEECH_CACHE / f for f in one_voice[:ESPEAK_COMMANDS]]
        source = f"{SPEECH_CACHE} (espeak-ng)"
    done(t, f"{len(commands)} commands from {source}")
    return commands, listen


def talk_stream(files: list[str]) -> Path:
    """The espeak-ng set's non-commands back to back (each with its own quiet and noise around
    it): talk near the wearer, which conversation mode hears as much as commands (cached)."""
    out = SPEECH_CACHE / "talk-stream.wav"
    if out.is_file() and out.stat().st_mtime >= (SPEECH_CACHE / "manifest.json").stat().st_mtime:
        return out
    frames = []
    for name in files:
        with wave.open(str(SPEECH_CACHE / name), "rb") as w:
            frames.append(w.readframes(w.getnframes()))
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(b"".join(frames))
    return out


def with_backend(config: Any, backend: str) -> Any:
    return config.model_copy(update={"asr": config.asr.model_copy(update={"backend": backend})})


def host_reference(commands: list[Path], cache: Path, backend: str) -> dict[str, Any]:
    """The same utterances decoded here, natively: CPU ms each (a cross-check, not a figure
    for the Pi; this machine's speed varies with what else runs on it)."""
    from pendant.core.config import load_config
    from pendant.ears.asr import create_recognizer
    from pendant.ears.audio.wav import read_audio
    from pendant.ears.understand.grammar import build_grammar
    from pendant.ears.understand.nlu import IntentParser

    t = step("the same utterances decoded on this machine (for comparison)")
    config = with_backend(load_config(CONFIG), backend)
    recognizer = create_recognizer(config, build_grammar(config, cache))
    parser = IntentParser(config)
    ms = []
    for wav in commands:
        audio = read_audio(wav)
        t0 = time.process_time()
        heard = recognizer.transcribe(audio)
        if heard is not None:
            parser.parse(heard.text)
        ms.append((time.process_time() - t0) * 1000)
    median = statistics.median(ms)
    done(t, f"median {median:.0f} ms of CPU an utterance")
    return {
        "host_utterance_cpu_ms": [round(x) for x in ms],
        "host_utterance_cpu_ms_median": round(median),
    }


def run_guest(
    root: Path,
    site: Path,
    lib: Path,
    argv: list[str],
    log: Path,
    core: str = "zero2w",
    per_thread: bool = False,
) -> str:
    """`argv` on the guest's python under qemu-aarch64 (as `core`'s CPU) with the plugin
    (counting each thread apart when `per_thread`); its stdout."""
    root = core_root(root, core)
    guest_proc(root, core)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        # The guest's own cache folder: the ears' and the eyes' models prepared for the board
        # (`pendant prepare`, the read part).
        "CACHE_DIRECTORY": str(EARS_CACHE),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{REPO / 'device'}:{site}",
        # One thread for numpy's BLAS: the ears run their audio path on one core. (The
        # plugin's shared counter is not atomic: a guest with threads is counted per thread.)
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    qemu = need("qemu-aarch64", "qemu-user")
    cmd = [
        "nice", "-n", "10", qemu, "-cpu", CORES[core]["qemu"], "-L", str(root),
        "-plugin", f"{lib},threads=on" if per_thread else str(lib), "-d", "plugin",
        "-D", str(log), str(root / GUEST_PYTHON), *argv,
    ]  # fmt: skip
    # `env -i`: only the variables above reach the guest. Its progress lines are shown as
    # they come; the rest of its stderr only if it fails.
    with subprocess.Popen(
        ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        errors = []
        for line in proc.stderr:
            if line.startswith("    "):
                print(line.rstrip()[:150], flush=True)
            else:
                errors.append(line.rstrip())
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise BenchError("the guest failed:\n  " + "\n  ".join(errors[-5:]))
    return out


def counted(
    root: Path,
    site: Path,
    lib: Path,
    guest: str,
    plan: dict[str, Any],
    name: str,
    core: str,
    per_thread: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """tools/arm/`guest` on `plan` as `core`'s CPU: the work it marked, and the instructions
    from the interpreter's start to its `ready` mark."""
    plan_path = WORK / f"plan-{name}.json"
    plan_path.write_text(json.dumps(plan, indent=2))
    log = WORK / f"guest-{name}.log"
    out = run_guest(root, site, lib, [str(REPO / "tools" / "arm" / guest), str(plan_path)],
                    log, core, per_thread)  # fmt: skip
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-ARM-MARKS ")), None)
    if line is None:
        raise BenchError(f"{guest} printed no marks: {out.strip()[-300:]}")
    marks = json.loads(line.split(" ", 1)[1])
    text = log.read_text()
    counts, _ = parse_plugin_log(text)
    ready = next(m["id"] for m in marks if m["label"] == "ready")
    return spans(marks, counts, parse_thread_counts(text)), counts[ready]


def prepare_models(root: Path, site: Path, lib: Path, plan: dict[str, Any], board: str) -> int:
    """What pendant-eyes-prepare.service does at boot, as `board`'s CPU, into the guest's
    cache folder (where the counted reads then find the copies): its instructions, the whole
    process's (a first boot's cost; later boots find the copies)."""
    # Made afresh: copies left by an earlier run would only be loaded, not made.
    copy = re.compile(r".*-[0-9a-f]{16}\.onnx")
    for old in EARS_CACHE.glob("*.onnx") if EARS_CACHE.is_dir() else ():
        if copy.fullmatch(old.name):
            old.unlink()
    plan_path = WORK / f"plan-prepare-{board}.json"
    plan_path.write_text(json.dumps(plan, indent=2))
    log = WORK / f"guest-prepare-{board}.log"
    out = run_guest(root, site, lib, [str(REPO / "tools" / "arm" / "guest_read.py"),
                                      str(plan_path)], log, board)  # fmt: skip
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-ARM-MARKS ")), None)
    if line is None:
        raise BenchError(f"guest_read.py (prepare) printed no marks: {out.strip()[-300:]}")
    marks = json.loads(line.split(" ", 1)[1])
    counts, _ = parse_plugin_log(log.read_text())
    return counts[next(m["id"] for m in marks if m["label"] == "prepared")]


def bench_read(root: Path, site: Path, lib: Path, images: int, boards: list[str]) -> dict:
    """ "read this" on the first `images` demo images, counted as each board's core."""
    from pendant.core.config import load_config

    config_json = WORK / "eyes-config.json"
    # What the eyes hand their reader: the validated config as one JSON line.
    config_json.write_text(load_config(CONFIG).model_dump_json())
    plan = {"config_json": str(config_json), "cores": BOARD_CORES,
            "images": [str(EYES_IMAGES / n) for n in READ_IMAGES[:images]]}  # fmt: skip
    runs = {}
    for board in boards:
        t = step(f"the eyes' models prepared for a {CORES[board]['qemu']} (pendant prepare)")
        prepared = prepare_models(root, site, lib, {**plan, "prepare": True}, board)
        done(t, f"{prepared / 1e9:.1f} G")
        t = step(f'"read this" under qemu-aarch64 as a {CORES[board]["qemu"]} ({images} images, '
                 "the eyes' reader; minutes)")  # fmt: skip
        work, ready = counted(
            root, site, lib, "guest_read.py", plan, f"read-{board}", board, per_thread=True
        )
        runs[board] = {"work": work, "ready_insns": ready, "prepare_insns": prepared}
        done(t, f"{sum(w['insns'] for w in work if w['what'] == 'read') / 1e9:.1f} G in the reads")
    return runs


def bench_ask(root: Path, lib: Path, recordings: int) -> dict:
    """The open-vocabulary transcription of `recordings` speech-en files, as a Pi 5's core,
    with the whisper extra's wheels."""
    site = site_packages(["whisper"])
    wavs = [SHARED_SPEECH / n for n in ASK_RECORDINGS[:recordings]]
    if not all(w.is_file() for w in wavs):
        raise BenchError(f"the Ask needs {SHARED_SPEECH} (../shared/testdata/speech-en)")
    t = step(f"an Ask under qemu-aarch64 as a cortex-a76 ({len(wavs)} recordings, Whisper "
             "base int8; minutes)")  # fmt: skip
    plan = {"config": str(CONFIG), "recordings": [str(w) for w in wavs]}
    work, ready = counted(root, site, lib, "guest_ask.py", plan, "ask-pi5", "pi5")
    done(t, f"{sum(w['insns'] for w in work if w['what'] == 'ask') / 1e9:.1f} G in the decodes")
    return {"work": work, "ready_insns": ready}


def bench_speaker(root: Path, lib: Path, boards: list[str]) -> dict:
    """The speaker check's embedding of SPEAKER_RECORDINGS, counted as each board's core,
    with the device's wheels (onnxruntime, numpy, webrtcvad are among them)."""
    site = site_packages([])
    wavs = [SHARED_SPEECH / n for n in SPEAKER_RECORDINGS]
    if not all(w.is_file() for w in wavs):
        raise BenchError(f"the speaker check needs {SHARED_SPEECH} (../shared/testdata/speech-en)")
    plan = {"config": str(CONFIG), "recordings": [str(w) for w in wavs]}
    runs = {}
    for board in boards:
        t = step(f"the speaker check under qemu-aarch64 as a {CORES[board]['qemu']} ({len(wavs)} "
                 "recordings, the GE2E encoder)")  # fmt: skip
        work, ready = counted(root, site, lib, "guest_speaker.py", plan, f"speaker-{board}", board)
        runs[board] = {"work": work, "ready_insns": ready}
        embeds = [w["insns"] for w in work if w["what"] == "embed"]
        done(t, f"median {statistics.median(embeds) / 1e6:.0f} M an embedding")
    return runs


PARTS = ("ears", "read", "ask", "speaker")


def bench(
    ipc: float,
    backend: str,
    parts: tuple[str, ...] = PARTS,
    images: int = len(READ_IMAGES),
    recordings: int = len(ASK_RECORDINGS),
    boards: list[str] | None = None,
) -> dict[str, Any]:
    root, lib = sysroot(), plugin()
    results: dict[str, Any] = {
        "what": "an estimate from aarch64 emulation (qemu-user + an instruction-count plugin), "
        "not a measurement on a Pi",
        "guest": f"Debian {SUITE} arm64 python3.11 under {_qemu_version()}",
        "host": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "clock_hz": CLOCK_HZ,
        "ipc_assumed": ipc,
        "ipc_range": list(IPC_RANGE),
        "ipc_note": IPC_NOTE,
    }
    if "ears" in parts:
        results.update(bench_ears(ipc, backend, root, lib))
    if "read" in parts or "ask" in parts or ("speaker" in parts and "pi5" in (boards or CORES)):
        results.update(
            pi5_clock_hz=PI5_CLOCK_HZ,
            pi5_ipc_assumed=PI5_IPC_ASSUMED,
            pi5_ipc_range=list(PI5_IPC_RANGE),
            pi5_ipc_note=PI5_IPC_NOTE,
            pi5_guest=f"Debian {SUITE} arm64 python3.11 (the Pi 5 image's trixie and CPython 3.13 "
            "not emulated) and the Zero 2 W's cp311 wheels, as a cortex-a76",
        )
    if "read" in parts:
        site = site_packages([])
        results["read_runs"] = bench_read(root, site, lib, images, boards or list(CORES))
        results["read"] = read_figures(results["read_runs"], ipc)
        results.update({k: v for k, v in results["read"].items() if not isinstance(v, dict)})
    if "ask" in parts:
        results["ask_run"] = bench_ask(root, lib, recordings)
        asked = ask_figures(results["ask_run"]["work"], results["ask_run"]["ready_insns"])
        results["ask"] = asked
        results.update({k: v for k, v in asked.items() if k != "ask"})
    if "speaker" in parts:
        results["speaker_runs"] = bench_speaker(root, lib, boards or list(CORES))
        results["speaker"] = speaker_figures(results["speaker_runs"], ipc)
        results.update({k: v for k, v in results["speaker"].items() if not isinstance(v, dict)})
    return results


def bench_ears(ipc: float, backend: str, root: Path, lib: Path) -> dict[str, Any]:
    """The ears' figures (the module's first two lists)."""
    site = site_packages(backend_extras(backend))
    guest_proc(root)
    cache = grammar_cache()
    commands, listen = audio()
    host = host_reference(commands, cache, backend)

    t = step("an empty run of the guest's python (start-up, for reference)")
    run_guest(root, site, lib, ["-c", "pass"], WORK / "empty.log")
    _, empty = parse_plugin_log((WORK / "empty.log").read_text())
    done(t, f"{(empty or 0) / 1e6:.0f} million instructions")

    plan = {
        "config": str(CONFIG),
        "backend": backend,
        "grammar_cache": str(cache),
        "commands": [str(p) for p in commands],
        "listen": {k: str(p) for k, p in listen.items()},
        "at_least_s": LISTEN_AT_LEAST_S,
    }
    plan_path = WORK / f"plan-{backend}.json"
    shutil.rmtree(EARS_CACHE, ignore_errors=True)
    plan_path.write_text(json.dumps(plan, indent=2))
    total_s = sum(max(_seconds(p), LISTEN_AT_LEAST_S) for p in listen.values())
    t = step(
        f"the ears under qemu-aarch64, counting ({backend}: {len(commands)} utterances, "
        f"{total_s:.0f} s of listening; several minutes)"
    )
    out = run_guest(root, site, lib, [str(REPO / "tools" / "arm" / "guest.py"), str(plan_path)],
                    WORK / f"guest-{backend}.log")  # fmt: skip
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH-ARM-MARKS ")), None)
    if line is None:
        raise BenchError(f"the guest printed no marks: {out.strip()[-300:]}")
    marks = json.loads(line.split(" ", 1)[1])
    counts, total = parse_plugin_log((WORK / f"guest-{backend}.log").read_text())
    work = spans(marks, counts)
    done(t, f"{(total or 0) / 1e9:.1f} billion instructions in all")

    ready = next(m["id"] for m in marks if m["label"] == "ready")
    spelling = sum(w["insns"] for w in work if w["what"] == "spell")
    return {
        "asr_backend": backend,
        "empty_run_insns": empty,
        "setup_insns": counts[ready] - counts[0] - spelling,
        "figures": figures(work, ipc, IPC_RANGE),
        **host,
        "work": work,
    }


def _seconds(wav: Path) -> float:
    import soundfile

    info = soundfile.info(str(wav))
    return info.frames / info.samplerate


def _qemu_version() -> str:
    out = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else "qemu-aarch64"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ipc", type=float, default=IPC_ASSUMED, help="assumed A53 IPC")
    parser.add_argument(
        "--backend",
        choices=sorted(BACKENDS),
        help="the recogniser to count (default: the config's, asr.backend)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="default: bench-arm-results.json, or bench-arm-results-BACKEND.json for a "
        "backend other than the config's",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        metavar="JSON",
        help="no emulation: convert the counts of an earlier run's results at --ipc",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="what to count, of ears (the recogniser and listening, on a Zero 2 W), read (the "
        "eyes' \"read this\", on a Zero 2 W and a Pi 5), ask (Whisper's open-vocabulary "
        "transcription, on a Pi 5) and speaker (the speaker check's embedding of an utterance, "
        "on a Zero 2 W and a Pi 5); default: all",
    )
    parser.add_argument(
        "--boards",
        default="zero2w,pi5",
        help="read, speaker: the boards' cores to count them as (zero2w, pi5; default both)",
    )
    parser.add_argument("--images", type=int, default=len(READ_IMAGES), help="read: how many")
    parser.add_argument("--recordings", type=int, default=len(ASK_RECORDINGS), help="ask: how many")
    args = parser.parse_args()
    parts = tuple(x.strip() for x in args.parts.split(",") if x.strip())
    unknown = [x for x in parts if x not in PARTS]
    if unknown or not parts:
        parser.error(f"--parts: {', '.join(unknown) or 'none'}: choose from {', '.join(PARTS)}")
    boards = [b.strip() for b in args.boards.split(",") if b.strip()]
    if not boards or any(b not in CORES for b in boards):
        parser.error(f"--boards: choose from {', '.join(CORES)}")
    if not 1 <= args.images <= len(READ_IMAGES) or not 1 <= args.recordings <= len(ASK_RECORDINGS):
        parser.error(f"--images 1-{len(READ_IMAGES)}, --recordings 1-{len(ASK_RECORDINGS)}")
    from pendant.core.config import load_config

    default = load_config(CONFIG).asr.backend
    backend = args.backend or default
    out = args.out or Path(
        "bench-arm-results.json" if backend == default else f"bench-arm-results-{backend}.json"
    )
    if args.reuse:
        results = refigured(json.loads(args.reuse.read_text()), args.ipc)
        print(table(results))
        out.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.path.insert(0, str(REPO / "packaging"))
    from lock import LockError

    try:
        results = bench(args.ipc, backend, parts, args.images, args.recordings, boards)
    except (BenchError, LockError) as exc:
        print(f"bench-arm: error: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(results))
    out.write_text(json.dumps(kept_with(out, results, parts), indent=2) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


def refigured(results: dict[str, Any], ipc: float) -> dict[str, Any]:
    """`results` with every part's figures worked out again from its counted instructions at
    `ipc` (the Zero 2 W's; the Pi 5's is fixed)."""
    results = dict(results, ipc_assumed=ipc, ipc_range=list(IPC_RANGE), ipc_note=IPC_NOTE)
    if "work" in results:
        results["figures"] = figures(results["work"], ipc, IPC_RANGE)
    for part, runs, figured in (
        ("read", "read_runs", read_figures),
        ("speaker", "speaker_runs", speaker_figures),
    ):
        if runs in results:
            results[part] = figured(results[runs], ipc)
            results.update({k: v for k, v in results[part].items() if not isinstance(v, dict)})
    return results


def kept_with(out: Path, results: dict[str, Any], parts: tuple[str, ...]) -> dict[str, Any]:
    """`results` over the earlier run's file when only some parts ran: a `--parts speaker`
    run must not drop the ears' figures that `make bench` (tools/hw_power.py) reads. The kept
    parts' figures are worked out again at this run's IPC, so the file has one."""
    if set(parts) >= set(PARTS):
        return results
    try:
        earlier = json.loads(out.read_text())
    except (OSError, ValueError):
        return results
    if not isinstance(earlier, dict):
        return results
    print(f"bench-arm: the other parts' figures kept from {out}", file=sys.stderr)
    return refigured(earlier | results, results["ipc_assumed"])


if __name__ == "__main__":
    raise SystemExit(main())
