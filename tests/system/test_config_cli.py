"""A bad config through the `pendant` command: one line naming the key, no traceback. The
config's own rules are tests/unit/core/test_config.py's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pendant.toml"
    path.write_text(text)
    return path


def test_cli_reports_bad_config_in_one_line_without_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "[audio]\nsource = 'tape'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pendant", "--config", str(path), "intents", "hello"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "audio.source" in lines[0]
    assert "Traceback" not in proc.stderr
