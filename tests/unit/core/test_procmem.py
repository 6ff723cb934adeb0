"""pendant.core.procmem: PSS, USS and RSS read from this machine's real /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pendant.core import procmem

TIMEOUT_S = 30.0


def test_own_figures_are_ordered_uss_pss_rss() -> None:
    mine = procmem.memory(os.getpid())
    assert 0 < mine.uss_kb <= mine.pss_kb <= mine.rss_kb


def test_a_child_is_found_and_counted_in_the_tree() -> None:
    # A child that holds 40 MB of its own: the tree must grow by about that much.
    code = "import sys; b = bytearray(40 * 1024 * 1024); print('ok', flush=True); sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        assert child.pid in procmem.tree(os.getpid())
        own = procmem.memory(child.pid)
        assert own.uss_kb >= 40 * 1024
        assert own.uss_kb <= own.pss_kb <= own.rss_kb
        alone, together = procmem.memory(os.getpid()), procmem.tree_memory(os.getpid())
        assert together.pss_kb >= alone.pss_kb + 40 * 1024
    finally:
        child.communicate("", timeout=TIMEOUT_S)


def test_a_process_that_is_gone_gives_an_error_naming_it() -> None:
    # Above Linux's largest pid_max (2**22): no process there.
    with pytest.raises(procmem.ProcMemError, match="no process 4194999"):
        procmem.memory(4_194_999)


def test_a_proc_without_smaps_rollup_says_so(tmp_path: Path) -> None:
    (tmp_path / "123").mkdir()  # the process is there, its smaps_rollup is not (an old kernel)
    with pytest.raises(procmem.ProcMemError, match="no smaps_rollup"):
        procmem.memory(123, proc=tmp_path)
    (tmp_path / "123" / "smaps_rollup").write_text("nothing here\n")
    with pytest.raises(procmem.ProcMemError, match="no Rss/Pss"):
        procmem.memory(123, proc=tmp_path)


def test_service_names_from_the_units_command_lines() -> None:
    exec_start = "/opt/pendant/venv/bin/pendant --config /etc/pendant/pendant.toml service ears"
    assert procmem.service_name(exec_start.split()) == "ears"
    web = ["/opt/pendant/venv/bin/python", "-m", "pendant.web", "--port", "8443"]
    assert procmem.service_name(web) == "web"
    assert procmem.service_name(["/usr/sbin/mosquitto", "-c", "x"]) is None
    assert procmem.service_name([]) is None


def test_the_cli_finds_a_running_service_and_prints_its_figures() -> None:
    # A stand-in whose command line reads like a unit's ExecStart.
    code = "import sys; sys.stdin.read()"
    child = subprocess.Popen(
        [sys.executable, "-c", code, "pendant", "service", "body"], stdin=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while "body" not in procmem.pendant_services() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = subprocess.run(
            [sys.executable, "-m", "pendant.core.procmem"],
            capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        )  # fmt: skip
    finally:
        child.communicate(b"", timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()}
    # Another checkout's test may run a body too: the row names one of them, with figures.
    pid, pss_mb, uss_mb, rss_mb = rows["body"][1:]
    assert int(pid) > 0 and 0 < float(uss_mb) <= float(pss_mb) <= float(rss_mb)
    assert float(rows["total"][1]) >= float(pss_mb)
