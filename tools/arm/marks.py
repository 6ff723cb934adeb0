"""The marks a bench-arm guest sets: a syscall the insn_count plugin watches (insn_count.c).

Imported first by tools/arm/guest_read.py, guest_ask.py and guest_speaker.py (guest.py has its
own copy): only ctypes, so the interpreter's start is all that runs before the first mark.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

MARK_SYSCALL = 0x7E57  # as in insn_count.c
_libc = ctypes.CDLL(None, use_errno=True)
_marks: list[dict[str, Any]] = []


def mark(label: str, **info: Any) -> None:
    """Tell the plugin to print its count here, under the mark's index; `label_end` closes
    `label` (tools/bench_arm.py pairs them)."""
    _libc.syscall(MARK_SYSCALL, len(_marks))
    _marks.append({"id": len(_marks), "label": label, **info})
    if label in ("ready", "read_end", "prepare_end", "ask_end", "load_end", "embed_end"):
        # Progress for the host to show: emulation is slow.
        print(f"    {label.removesuffix('_end')}: {info or 'loaded'}", file=sys.stderr, flush=True)


def dump() -> None:
    """The marks, as the one line tools/bench_arm.py reads from the guest's stdout."""
    print("BENCH-ARM-MARKS " + json.dumps(_marks), flush=True)
