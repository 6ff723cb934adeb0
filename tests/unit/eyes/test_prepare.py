"""`pendant prepare` (pendant-eyes-prepare.service): every model the eyes load is kept prepared
for this machine, and a reader then loads each from its copy."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from pendant.app.cli import main
from pendant.core import onnx_session
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config

REPO = Path(__file__).resolve().parents[3]


def test_prepare_keeps_a_copy_of_each_model_the_eyes_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tmp_path / "cache"
    monkeypatch.setenv("CACHE_DIRECTORY", str(kept))
    assert main(["--config", str(REPO / "examples" / "pendant.toml"), "prepare"]) == 0
    names = {p.name.rsplit("-", 1)[0] for p in kept.iterdir()}
    # The face guard, the OCR's three and the configured detector.
    assert {"retinaface-weights", "ppocr-v6-det", "ppocr-v6-cls", "ppocr-v6-rec"} < names
    assert len(names) == 5
    before = sorted(kept.iterdir())

    levels: list[object] = []
    real = onnx_session._load

    def load(model: object, name: str, options: ort.SessionOptions) -> object:
        levels.append(options.graph_optimization_level)
        return real(model, name, options)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_session, "_load", load)
    Eyes(eyes_config(), keep_models=False).load_each()
    # Each loaded from its copy, nothing optimised again, nothing new written.
    assert levels == [ort.GraphOptimizationLevel.ORT_DISABLE_ALL] * 5
    assert sorted(kept.iterdir()) == before
