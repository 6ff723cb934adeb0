"""The NLU's REPL (`python -m pendant.ears.understand.nlu`): a sentence a line in, an intent or
"no intent" a line out. What it understands is tests/unit/ears/test_nlu.py's."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import DEMO_CONFIG


def test_repl() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pendant.ears.understand.nlu", "--config", str(DEMO_CONFIG)],
        input="set a timer for 5 minutes\nblah blah\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = run.stdout.splitlines()
    assert json.loads(lines[0])["intent"] == "HassStartTimer"
    assert json.loads(lines[0])["slots"][0]["value"] == 5
    assert lines[1] == "no intent"
