"""`pendant look` as a process: one scene a line per image, and one-line errors for a file that
is no image and for a model that is missing. The eyes themselves are
tests/unit/eyes/test_eyes.py's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pendant.core.config import Config, ModelsConfig
from pendant.core.errors import ModelError
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config, face_image, normalise, render_text, save_png


@pytest.fixture(scope="module")
def config() -> Config:
    return eyes_config()


def _pendant(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pendant", *args],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip


def _config_file(tmp_path: Path, cache: str) -> Path:
    path = tmp_path / "pendant.toml"
    path.write_text(f'[models]\ncache_dir = "{cache}"\n')
    return path


def test_pendant_look_prints_one_scene_per_image(config: Config, tmp_path: Path) -> None:
    text = save_png(render_text(["Call the dentist"]), tmp_path / "note.png")
    face = save_png(face_image(), tmp_path / "face.jpg")
    cfg = _config_file(tmp_path, config.models.cache_dir)
    done = _pendant("--config", str(cfg), "look", str(text), str(face))
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first["type"] == "scene" and normalise(first["text"]) == "call the dentist"
    assert second["face_count"] == 1 and "text" not in second


def test_pendant_look_names_a_file_that_is_no_image(config: Config, tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    cfg = _config_file(tmp_path, config.models.cache_dir)
    for path in (bad, tmp_path / "missing.png"):
        done = _pendant("--config", str(cfg), "look", str(path))
        assert done.returncode == 2
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1 and str(path) in done.stderr


def test_missing_model_is_one_line(tmp_path: Path) -> None:
    empty = Config(models=ModelsConfig(cache_dir=str(tmp_path)))
    with pytest.raises(ModelError) as err:
        Eyes(empty)
    assert "\n" not in str(err.value) and "python -m pendant.setup.fetch_models fetch" in str(
        err.value
    )
    image = save_png(render_text(["x"]), tmp_path / "x.png")
    done = _pendant("--config", str(_config_file(tmp_path, str(tmp_path))), "look", str(image))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "is not in" in done.stderr and "Traceback" not in done.stderr
