"""One line of `pendant doctor`: what was checked, how it stands, and what to do about it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Run = Callable[..., subprocess.CompletedProcess[str]]

Verdict = Literal["OK", "WARN", "FAIL"]
"""FAIL: the pendant cannot do its work until this is fixed (the exit code says so). WARN:
it works, worse or at a risk, or the check could not tell. OK: as it should be."""


@dataclass(frozen=True)
class Finding:
    """What was checked (`part`), how it stands, what was seen, and what to do about it (shown
    unless OK)."""

    part: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One line, whatever the detail holds (an error's text may carry newlines)."""
        tail = f"  -> {self.fix}" if self.fix and self.verdict != "OK" else ""
        text = f"{self.verdict:<4} {self.part:<11} {self.detail}{tail}"
        return " ".join(text.splitlines())


def tool_output(argv: list[str], timeout_s: float, run: Run = subprocess.run) -> str | None:
    """What a system tool (`timedatectl`, `vcgencmd`) printed, stripped; None where it is not
    installed, fails, or hangs: the check then says it could not tell."""
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        proc = run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout_s,
                   check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None
