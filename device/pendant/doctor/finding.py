"""One line of `pendant doctor`: what was checked, how it stands, and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal["OK", "WARN", "FAIL"]
"""FAIL: the pendant cannot do its work until this is fixed (the exit code says so). WARN:
it works, worse or at a risk, or the check could not tell. OK: as it should be."""


@dataclass(frozen=True)
class Finding:
    part: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def line(self) -> str:
        """One line, whatever the detail holds (an error's text may carry newlines)."""
        tail = f"  -> {self.fix}" if self.fix and self.verdict != "OK" else ""
        text = f"{self.verdict:<4} {self.part:<11} {self.detail}{tail}"
        return " ".join(text.splitlines())
