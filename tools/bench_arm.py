"""`make bench-arm`: an estimate of the ears' cost on a Pi Zero 2 W, from aarch64 emulation.

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
- for hama, once: its G2P spelling every word of the home's closed set, as on the first start
  on a new home (later starts read the spellings from the ears' cache folder; the guest's is
  emptied before each run). Not in the per-utterance figures;
- per minute of listening to silence, to room noise and to speech (the demo stream): the
  listener loop (webrtcvad, Silero, the segmenter, early and final recognition), as
  `make bench` measures "listening to silence", but fed from memory as fast as it takes it.

A backend with an extra in pyproject.toml (whisper) has that extra's locked aarch64 wheels added
to the guest's.

Instructions become Zero 2 W time with an assumed IPC (instructions per cycle) for its
Cortex-A53 at 1 GHz: time = instructions / (IPC x 1 GHz). The A53 is a dual-issue in-order
core (at most 2 instructions a cycle); branchy interpreter code and cache misses keep it well
below that. IPC_ASSUMED is the central figure, IPC_RANGE the bounds the table also shows. An
emulator counts instructions exactly but knows nothing of caches or the pipeline: the time is
only as good as the IPC.

Steps (each cached under .cache/bench-arm, shown with its time): the arm64 sysroot
(mmdebstrap --variant=extract, Debian's archive), the locked wheels (fetched once into
~/.cache/pendant/wheels, checked by the lock's sha256), the plugin (cc), the grammar (compiled
here; the guest reads it from the same cache), the audio (tools/speech_sets.py), an empty
interpreter run for reference, then the counted run. Writes bench-arm-results.json (for a
backend other than the config's, bench-arm-results-BACKEND.json).
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

# The guest's ears' cache folder, emptied before each counted run: a first start.
EARS_CACHE = WORK / "ears-cache"

MARK_RE = re.compile(r"^insn-mark (\d+) (\d+)$", re.M)
TOTAL_RE = re.compile(r"^insn-total (\d+)$", re.M)


class BenchError(Exception):
    """The bench cannot go on; the message names what to fix."""


# --------------------------------------------------------------------------- pure parts


def parse_plugin_log(text: str) -> tuple[dict[int, int], int | None]:
    """The plugin's counts: {mark id: instructions so far}, and the total at exit (or None)."""
    marks = {int(i): int(n) for i, n in MARK_RE.findall(text)}
    totals = TOTAL_RE.findall(text)
    return marks, int(totals[-1]) if totals else None


def spans(marks: list[dict[str, Any]], counts: dict[int, int]) -> list[dict[str, Any]]:
    """Each piece of work the guest marked (a mark and its `..._end`) with its instructions."""
    out = []
    for start, end in itertools.pairwise(marks):
        if end["label"] == start["label"] + "_end":
            if start["id"] not in counts or end["id"] not in counts:
                raise BenchError(f"the plugin printed no count for mark {start['id']}/{end['id']}")
            info = {k: v for k, v in start.items() if k not in ("id", "label")}
            info.update({k: v for k, v in end.items() if k not in ("id", "label")})
            out.append(
                {"what": start["label"], **info, "insns": counts[end["id"]] - counts[start["id"]]}
            )
    return out


def insns_to_ms(insns: float, ipc: float, clock_hz: float = CLOCK_HZ) -> float:
    """Time on one core: instructions / (IPC x clock)."""
    return insns / (ipc * clock_hz) * 1000


def core_pct(insns: float, audio_s: float, ipc: float, clock_hz: float = CLOCK_HZ) -> float:
    """Share of one core that keeps up with `audio_s` of audio costing `insns`."""
    return 100 * insns / (ipc * clock_hz * audio_s)


def figures(work: list[dict[str, Any]], ipc: float, ipc_range: tuple[float, float]) -> dict:
    """The results: instructions per utterance and per minute of listening, and Zero 2 W
    time (ms per utterance, % of one core listening) at the assumed IPC and its bounds; for
    a recogniser that spells the closed set at start-up (hama), that spelling, once."""
    lo, hi = ipc_range
    out: dict[str, Any] = {"utterances": [], "listening": {}}
    for w in work:
        if w["what"] == "spell":
            out["spell"] = {
                "words": w["words"],
                "insns": w["insns"],
                "insns_per_word": round(w["insns"] / max(w["words"], 1)),
                "zero2w_s": round(insns_to_ms(w["insns"], ipc) / 1000, 1),
                "zero2w_s_range": [
                    round(insns_to_ms(w["insns"], hi) / 1000, 1),
                    round(insns_to_ms(w["insns"], lo) / 1000, 1),
                ],
            }
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


def table(results: dict[str, Any]) -> str:
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
    if "spell" in f:
        s = f["spell"]
        a, b = s["zero2w_s_range"]
        lines.append(
            f"\nfirst start on a new home, once (not per utterance): the G2P spelling "
            f"{s['words']} words, {s['insns'] / 1e6:.0f} Minsn "
            f"({s['insns_per_word'] / 1e6:.1f} a word), {s['zero2w_s']} s ({a}-{b} s)"
        )
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
        + (" (the spelling above excluded)" if "spell" in f else "")
    )
    return "\n".join(lines)


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


def cpuinfo(cpus: list[int]) -> str:
    """/proc/cpuinfo as a Zero 2 W's Cortex-A53 cores (Arm, part 0xd03) would show it."""
    return "\n".join(
        f"processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd03\nCPU revision\t: 4\n"
        for i in cpus
    )


def guest_proc(root: Path) -> None:
    """onnxruntime's cpuinfo reads /proc/cpuinfo, finds the host's x86 cores there (qemu 7.2
    passes it through for aarch64) and crashes at import. qemu-user looks a path up in the
    sysroot (-L) first, so an aarch64 cpuinfo there is what the guest reads; as many cores as
    /sys (which is the host's, and which it also reads) says are possible."""
    possible = Path("/sys/devices/system/cpu/possible").read_text()
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(cpuinfo(cpu_list(possible)))


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
    listen = {
        "silence": by_kind["silence"],
        "noise": by_kind["noise"],
        "speech": SPEECH_CACHE / demo["file"],
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


def run_guest(root: Path, site: Path, lib: Path, argv: list[str], log: Path) -> str:
    """`argv` on the guest's python under qemu-aarch64 with the plugin; its stdout."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(Path.home()),
        # The ears' cache folder (hama keeps its G2P's spellings there): the guest's own.
        "CACHE_DIRECTORY": str(EARS_CACHE),
        "LANG": "C.UTF-8",
        "PYTHONPATH": f"{REPO / 'device'}:{site}",
        # One thread everywhere: the plugin's counter is shared and not atomic, and the ears
        # run their audio path on one core.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    qemu = need("qemu-aarch64", "qemu-user")
    cmd = [
        "nice", "-n", "10", qemu, "-cpu", "cortex-a53", "-L", str(root),
        "-plugin", str(lib), "-d", "plugin",
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


def bench(ipc: float, backend: str) -> dict[str, Any]:
    root, site, lib = sysroot(), site_packages(backend_extras(backend)), plugin()
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
        "what": "an estimate from aarch64 emulation (qemu-user + an instruction-count plugin), "
        "not a measurement on a Pi",
        "guest": f"Debian {SUITE} arm64 python3.11 under {_qemu_version()}",
        "host": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "asr_backend": backend,
        "clock_hz": CLOCK_HZ,
        "ipc_assumed": ipc,
        "ipc_range": list(IPC_RANGE),
        "ipc_note": IPC_NOTE,
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
    args = parser.parse_args()
    from pendant.core.config import load_config

    default = load_config(CONFIG).asr.backend
    backend = args.backend or default
    out = args.out or Path(
        "bench-arm-results.json" if backend == default else f"bench-arm-results-{backend}.json"
    )
    if args.reuse:
        results = json.loads(args.reuse.read_text())
        results.update(
            ipc_assumed=args.ipc,
            ipc_range=list(IPC_RANGE),
            ipc_note=IPC_NOTE,
            figures=figures(results["work"], args.ipc, IPC_RANGE),
        )
        print(table(results))
        out.write_text(json.dumps(results, indent=2) + "\n")
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.path.insert(0, str(REPO / "packaging"))
    from lock import LockError

    try:
        results = bench(args.ipc, backend)
    except (BenchError, LockError) as exc:
        print(f"bench-arm: error: {exc}", file=sys.stderr)
        return 1
    print()
    print(table(results))
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
