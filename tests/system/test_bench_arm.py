"""`make bench-arm`'s pure parts (tools/bench_arm.py): reading the plugin's counts, pairing the
guest's marks, and turning instructions into Zero 2 W time. No emulation, no timing."""

from __future__ import annotations

import importlib.util
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


def test_the_g2p_spelling_is_its_own_row_and_in_no_utterance() -> None:
    work = [
        {"what": "spell", "words": 400, "insns": 60_000_000_000},
        {"what": "decode", "file": "a.wav", "audio_s": 2, "insns": 900_000_000},
        {"what": "parse", "intent": "HassTurnOn", "insns": 100_000_000},
    ]
    f = bench_arm.figures(work, 0.5, (0.5, 1.0))
    assert f["spell"]["zero2w_s"] == 120.0 and f["spell"]["zero2w_s_range"] == [60.0, 120.0]
    assert f["spell"]["insns_per_word"] == 150_000_000
    assert f["utterance_insns_median"] == 1_000_000_000
    results = {"ipc_assumed": 0.5, "ipc_range": [0.5, 1.0], "clock_hz": 1e9, "figures": f,
               "empty_run_insns": 1, "setup_insns": 2, "host": "x"}  # fmt: skip
    assert "spelling 400 words" in bench_arm.table(results)


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
