"""`make bench-arm`'s pure parts (tools/bench_arm.py): reading the plugin's counts, pairing the
guest's marks, and turning instructions into Zero 2 W time. No emulation, no timing."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_arm", REPO / "tools" / "bench_arm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_arm"] = module
    spec.loader.exec_module(module)
    return module


bench_arm = _load()

LOG = """\
insn-mark 0 1000
insn-mark 1 5000
insn-mark 2 5100
insn-mark 3 7100
insn-mark 4 8000
insn-mark 5 68000
insn-total 70000
"""

MARKS = [
    {"id": 0, "label": "start"},
    {"id": 1, "label": "ready"},
    {"id": 2, "label": "decode", "file": "a.wav", "audio_s": 2.0},
    {"id": 3, "label": "decode_end", "text": "turn on the light"},
    {"id": 4, "label": "listen", "kind": "silence", "file": "s.wav", "audio_s": 60.0},
    {"id": 5, "label": "listen_end", "kind": "silence", "intents": [], "utterances": 0},
]


def test_the_plugin_log_gives_each_mark_and_the_total() -> None:
    marks, total = bench_arm.parse_plugin_log("some qemu line\n" + LOG)
    assert marks == {0: 1000, 1: 5000, 2: 5100, 3: 7100, 4: 8000, 5: 68000}
    assert total == 70000


def test_a_log_cut_short_has_no_total() -> None:
    assert bench_arm.parse_plugin_log("insn-mark 0 12\n") == ({0: 12}, None)


def test_work_is_the_instructions_between_a_mark_and_its_end() -> None:
    counts, _ = bench_arm.parse_plugin_log(LOG)
    work = bench_arm.spans(MARKS, counts)
    assert [(w["what"], w["insns"]) for w in work] == [("decode", 2000), ("listen", 60000)]
    assert work[0]["text"] == "turn on the light" and work[0]["audio_s"] == 2.0
    assert work[1]["kind"] == "silence"


def test_a_mark_the_plugin_did_not_count_is_an_error() -> None:
    with pytest.raises(bench_arm.BenchError):
        bench_arm.spans(MARKS, {0: 1, 1: 2, 2: 3})


def test_instructions_become_time_at_the_assumed_ipc() -> None:
    # 700 million instructions at IPC 0.7 and 1 GHz: one second.
    assert bench_arm.insns_to_ms(700e6, 0.7) == pytest.approx(1000)
    assert bench_arm.insns_to_ms(700e6, 1.4) == pytest.approx(500)
    # 60 s of audio costing 600 million instructions at IPC 1: 1 % of a 1 GHz core.
    assert bench_arm.core_pct(600e6, 60, 1.0) == pytest.approx(1.0)


def test_figures_bracket_the_estimate_with_the_ipc_range() -> None:
    work = [
        {"what": "decode", "file": "a.wav", "audio_s": 2, "insns": 900_000_000},
        {"what": "parse", "intent": "HassTurnOn", "insns": 100_000_000},
        {"what": "decode", "file": "b.wav", "audio_s": 2, "insns": 2_900_000_000},
        {"what": "parse", "intent": None, "insns": 100_000_000},
        {"what": "listen", "kind": "noise", "file": "n.wav", "audio_s": 60, "insns": 6e8},
    ]
    f = bench_arm.figures(work, 0.5, (0.5, 1.0))
    assert f["utterance_insns_median"] == 2_000_000_000
    assert f["utterance_zero2w_ms_median"] == 4000
    assert f["utterance_zero2w_ms_median_range"] == [2000, 4000]
    assert f["utterances"][0]["intent"] == "HassTurnOn" and f["parse_share_pct"] == 5.0
    noise = f["listening"]["noise"]
    assert noise["insns_per_min"] == 600_000_000
    assert noise["zero2w_core_pct"] == 2.0
    assert noise["zero2w_core_pct_range"] == [1.0, 2.0]
    results = {"ipc_assumed": 0.5, "ipc_range": [0.5, 1.0], "clock_hz": 1e9, "figures": f,
               "empty_run_insns": 1, "setup_insns": 2, "host": "x"}  # fmt: skip
    printed = bench_arm.table(results)
    assert "IPC 0.5 assumed" in printed and "noise" in printed


def test_a_backend_with_an_extra_gets_its_wheels() -> None:
    assert bench_arm.backend_extras("whisper") == ["whisper"]
    assert bench_arm.backend_extras("hama") == []


def test_the_guest_sees_a53_cores_in_cpuinfo() -> None:
    assert bench_arm.cpu_list("0-3\n") == [0, 1, 2, 3]
    assert bench_arm.cpu_list("0,2-3") == [0, 2, 3]
    text = bench_arm.cpuinfo([0, 1])
    assert text.count("CPU part\t: 0xd03") == 2 and "processor\t: 1" in text


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_plugin_compiles_cleanly(tmp_path: Path) -> None:
    src = REPO / "tools" / "arm" / "insn_count.c"
    lib = tmp_path / "libinsn_count.so"
    cmd = ["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-o", str(lib), str(src)]
    subprocess.run(cmd, check=True)
    assert lib.is_file()


# "read this" and the Ask (the read and ask parts): marks as tools/arm/guest_read.py and
# guest_ask.py set them, steps nested inside a read.
READ_LOG = """\
insn-mark 0 80000000
insn-mark 1 900000000
insn-mark 2 1000000000
insn-mark 3 1000000000
insn-mark 4 1500000000
insn-mark 5 1600000000
insn-mark 6 4000000000
insn-mark 7 5000000000
insn-mark 8 5000000000
insn-mark 9 5300000000
"""

READ_MARKS = [
    {"id": 0, "label": "start"},
    {"id": 1, "label": "ready"},
    {"id": 2, "label": "read", "file": "oat-milk.png"},
    {"id": 3, "label": "mask"},
    {"id": 4, "label": "mask_end"},
    {"id": 5, "label": "det"},
    {"id": 6, "label": "det_end"},
    {"id": 7, "label": "read_end", "text": "ORGANIC OAT MILK", "faces": 0},
    {"id": 8, "label": "prepare"},
    {"id": 9, "label": "prepare_end"},
]


def read_runs() -> dict:
    counts, _ = bench_arm.parse_plugin_log(READ_LOG)
    work = bench_arm.spans(READ_MARKS, counts)
    return {board: {"work": work, "ready_insns": counts[1]} for board in ("zero2w", "pi5")}


def test_steps_inside_a_read_are_their_own_spans_and_the_read_holds_them() -> None:
    work = read_runs()["zero2w"]["work"]
    assert [(w["what"], w["insns"]) for w in work] == [
        ("read", 4_000_000_000),
        ("mask", 500_000_000),
        ("det", 2_400_000_000),
        ("prepare", 300_000_000),
    ]
    assert work[0]["text"] == "ORGANIC OAT MILK"


def test_read_this_gives_zero2w_and_pi5_seconds_warm_and_cold() -> None:
    f = bench_arm.read_figures(read_runs())
    for board in ("zero2w", "pi5"):
        for key in (f"read_this_s_{board}", f"read_this_cold_s_{board}", f"reader_start_s_{board}"):
            assert f[key] > 0, key
        fast, slow = f[f"read_this_s_{board}_range"]
        assert fast <= f[f"read_this_s_{board}"] <= slow
        # The cold capture is the read plus the reader's start (900 M from exec).
        assert f[f"read_this_cold_s_{board}"] > f[f"read_this_s_{board}"]
        assert f[f"read_this_capture_insns_{board}"] == 900_000_000 + 4_000_000_000 + 300_000_000
    # 4 G instructions at the A53's IPC 0.6 and 1 GHz; the A76's 1.5 at 2.4 GHz.
    assert f["read_this_s_zero2w"] == pytest.approx(4e9 / 0.6e9, abs=0.01)
    assert f["read_this_s_pi5"] == pytest.approx(4e9 / 3.6e9, abs=0.01)
    assert f["zero2w"]["read_breakdown_insns_median"] == {
        "mask": 500_000_000,
        "det": 2_400_000_000,
        "other": 1_100_000_000,
    }
    # --ipc moves the Zero 2 W's time, not the Pi 5's.
    g = bench_arm.read_figures(read_runs(), ipc=1.2)
    assert g["read_this_s_zero2w"] == pytest.approx(f["read_this_s_zero2w"] / 2, abs=0.01)
    assert g["read_this_s_pi5"] == f["read_this_s_pi5"]


# The same read counted per thread (the plugin's threads=on), the same totals: three threads;
# the mask ran on the main thread alone, the detection on all three (the main's share largest).
THREADS_LOG = """\
insn-threads 0 80000000
insn-threads 1 900000000 0 0
insn-threads 2 1000000000 0 0
insn-threads 3 1000000000 0 0
insn-threads 4 1500000000 0 0
insn-threads 5 1600000000 0 0
insn-threads 6 2500000000 700000000 800000000
insn-threads 7 3500000000 700000000 800000000
insn-threads 8 3500000000 700000000 800000000
insn-threads 9 3800000000 700000000 800000000
"""


def test_per_thread_counts_are_read_from_the_plugin_log() -> None:
    threads = bench_arm.parse_thread_counts("a qemu line\n" + READ_LOG + THREADS_LOG)
    assert threads[0] == [80_000_000] and threads[9] == [3_800_000_000, 700_000_000, 800_000_000]
    assert bench_arm.parse_thread_counts(READ_LOG) == {}


def test_a_read_on_threads_is_timed_on_its_critical_path_and_costs_all_its_work() -> None:
    counts, _ = bench_arm.parse_plugin_log(READ_LOG)
    marks = [m | {"threads": 3} if m["label"] == "read" else m for m in READ_MARKS]
    work = bench_arm.spans(marks, counts, bench_arm.parse_thread_counts(THREADS_LOG))
    det = next(w for w in work if w["what"] == "det")
    assert (det["main"], det["busiest"]) == (900_000_000, 900_000_000)
    read = work[0]
    # The mask (0.5 G) and the detection's busiest thread (0.9 G) one after the other, and
    # what the main thread ran between the steps (3.5 - 1.0 - 0.5 - 0.9 = 1.1 G).
    assert bench_arm.critical_path(read, work) == 500_000_000 + 900_000_000 + 1_100_000_000
    f = bench_arm.read_figures({"zero2w": {"work": work, "ready_insns": counts[1]}})
    assert f["zero2w"]["model_threads"] == 3  # as the guest's read marks said
    assert f["read_this_s_zero2w"] == pytest.approx(2.5e9 / 0.6e9, abs=0.01)
    # The energy is every thread's work: the instructions counted over all of them.
    assert f["read_this_capture_insns_zero2w"] == 900_000_000 + 4_000_000_000 + 300_000_000
    # Without per-thread counts the read is one thread's: all of it on the critical path.
    plain = bench_arm.spans(READ_MARKS, counts)
    assert bench_arm.critical_path(plain[0], plain) == 4_000_000_000


def test_an_ask_gives_the_pi5_transcription_and_the_answer_estimate() -> None:
    work = [
        {"what": "ask", "file": "a.wav", "audio_s": 2.0, "text": "Hi.", "insns": 3_600_000_000,
         "at": 2, "until": 3},
        {"what": "ask", "file": "b.wav", "audio_s": 3.0, "text": None, "insns": 7_200_000_000,
         "at": 4, "until": 5},
    ]  # fmt: skip
    f = bench_arm.ask_figures(work, ready_insns=10_000_000_000)
    assert f["ask_transcribe_s_pi5"] > 0 and f["ask_model_load_s_pi5"] > 0
    # The median, 5.4 G, at IPC 1.5 and 2.4 GHz.
    assert f["ask_transcribe_s_pi5"] == pytest.approx(1.5)
    rest = bench_arm.ASK_X86_ANSWER_P50_S - bench_arm.ASK_X86_WHISPER_S
    assert f["ask_answer_s_pi5_est"] == pytest.approx(rest + 1.5)
    assert bench_arm.ask_figures([], 1) == {}


def test_the_table_prints_read_this_and_the_ask_alone() -> None:
    results = {"read": bench_arm.read_figures(read_runs())}
    results.update({k: v for k, v in results["read"].items() if not isinstance(v, dict)})
    ask = bench_arm.ask_figures(
        [{"what": "ask", "file": "a.wav", "audio_s": 2.0, "insns": 3_600_000_000}], 1
    )
    results["ask"] = ask
    printed = bench_arm.table(results)
    assert "read this" in printed and "pi5" in printed and "zero2w" in printed
    assert "end of speech -> answer" in printed and "of which" in printed


def test_the_pi5_guest_sees_a76_cores() -> None:
    text = bench_arm.cpuinfo([0], "pi5")
    assert "CPU part\t: 0xd0b" in text and "asimddp" in text
    assert "0xd03" in bench_arm.cpuinfo([0])


def test_the_speaker_check_gives_the_median_embedding_and_the_load_per_board() -> None:
    # Marks as tools/arm/guest_speaker.py sets them: the encoder's load, then three embeddings.
    log = "\n".join(
        f"insn-mark {i} {n}"
        for i, n in enumerate([10**6, 10**8, 2 * 10**8, 2 * 10**8, 3 * 10**8, 4 * 10**8,
                               5 * 10**8, 7 * 10**8, 8 * 10**8])
    )  # fmt: skip
    marks = [
        {"id": 0, "label": "start"},
        {"id": 1, "label": "load"},
        {"id": 2, "label": "load_end"},
        {"id": 3, "label": "ready"},
        {"id": 4, "label": "embed", "file": "a.wav", "audio_s": 2.0},
        {"id": 5, "label": "embed_end", "embedded": True},
        {"id": 6, "label": "embed", "file": "b.wav", "audio_s": 3.0},
        {"id": 7, "label": "embed_end", "embedded": True},
        {"id": 8, "label": "embed", "file": "c.wav", "audio_s": 2.5},
    ]
    counts, _ = bench_arm.parse_plugin_log(log)
    # The last embedding never closed: not a span, not in the median.
    work = bench_arm.spans(marks, counts)
    runs = {board: {"work": work, "ready_insns": counts[3]} for board in ("zero2w", "pi5")}
    f = bench_arm.speaker_figures(runs)
    assert f["zero2w"]["embed_insns_median"] == 150_000_000  # of 100 M and 200 M
    assert f["zero2w"]["load_insns"] == 100_000_000
    # 150 M at the A53's IPC 0.6 and 1 GHz, its bounds 1.0 and 0.4; the A76's 1.5 at 2.4 GHz.
    assert f["speaker_embed_ms_zero2w"] == 250.0
    assert f["speaker_embed_ms_zero2w_range"] == [150.0, 375.0]
    assert f["speaker_embed_ms_pi5"] == pytest.approx(150e6 / 3.6e9 * 1000, abs=0.05)
    assert f["speaker_load_s_zero2w"] == pytest.approx(0.17) and f["speaker_load_s_pi5"] == 0.03
    assert f["speaker_start_s_zero2w"] == pytest.approx(0.33)
    # --ipc moves the Zero 2 W's time, not the Pi 5's.
    g = bench_arm.speaker_figures(runs, ipc=1.2)
    assert g["speaker_embed_ms_zero2w"] == 125.0
    assert g["speaker_embed_ms_pi5"] == f["speaker_embed_ms_pi5"]
    results = {"speaker": f, **{k: v for k, v in f.items() if not isinstance(v, dict)}}
    printed = bench_arm.table(results)
    assert "speaker check" in printed and "encoder load" in printed and "pi5" in printed
    assert bench_arm.speaker_figures({"zero2w": {"work": [], "ready_insns": 1}}) == {}


def test_a_run_of_some_parts_keeps_the_other_parts_figures(tmp_path: Path) -> None:
    # A `--parts speaker` run once replaced the file, and `make bench` lost the ears' figures.
    out = tmp_path / "bench-arm-results.json"
    out.write_text('{"figures": {"utterance_s": 5.5}, "speaker_embed_ms_zero2w": 1}')
    run = {"ipc_assumed": 0.5, "speaker_embed_ms_zero2w": 166.8}
    merged = bench_arm.kept_with(out, run, ("speaker",))
    assert merged["figures"] == {"utterance_s": 5.5}
    assert merged["speaker_embed_ms_zero2w"] == 166.8 and merged["ipc_assumed"] == 0.5
    # A whole run is the whole file; an unreadable earlier file is not an error.
    assert bench_arm.kept_with(out, {"a": 1}, bench_arm.PARTS) == {"a": 1}
    out.write_text("{not json")
    assert bench_arm.kept_with(out, {"a": 1}, ("speaker",)) == {"a": 1}


def test_kept_figures_are_worked_out_again_at_the_new_runs_ipc(tmp_path: Path) -> None:
    # Kept as they were, a `--parts speaker --ipc 1.2` run would have left read-this seconds
    # at the old IPC under the new `ipc_assumed`.
    out = tmp_path / "bench-arm-results.json"
    out.write_text(json.dumps(bench_arm.refigured({"read_runs": read_runs()}, 0.6)))
    merged = bench_arm.kept_with(out, {"ipc_assumed": 1.2}, ("speaker",))
    assert merged["read"] == bench_arm.read_figures(read_runs(), ipc=1.2)
    assert merged["read"] != json.loads(out.read_text())["read"]
