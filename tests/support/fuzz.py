"""How many examples a hypothesis fuzz test tries: all of them under `make test`, a few otherwise.

`make test` (and so CI) sets PENDANT_FUZZ=full and runs each fuzz test at the count written in
it; a bare `pytest tests/unit` while editing tries a twentieth (at least 50), so the unit tests
answer in well under a minute and the full search still runs before anything lands.
"""

from __future__ import annotations

import os

FULL = os.environ.get("PENDANT_FUZZ") == "full"


def examples(full: int) -> int:
    """`full` under `make test`; a twentieth of it, and at least 50, otherwise."""
    return full if FULL else max(50, full // 20)
