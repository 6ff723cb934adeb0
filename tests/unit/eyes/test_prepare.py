"""`pendant prepare` (pendant-eyes-prepare.service): every model the eyes may run on the CPU is
kept prepared for this machine, and a reader then loads each from its copy and writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pendant.app.cli import main
from pendant.core import onnx_session
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config, render_text

REPO = Path(__file__).resolve().parents[3]


def test_prepare_keeps_a_copy_of_each_model_and_the_eyes_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "cache"
    monkeypatch.setenv("CACHE_DIRECTORY", str(kept))
    assert main(["--config", str(REPO / "examples" / "pendant.toml"), "prepare"]) == 0
    assert capsys.readouterr().out == f"5 of 5 models prepared for this board in {kept}\n"
    names = {p.name.rsplit("-", 1)[0] for p in kept.iterdir()}
    # The face guard, the OCR's three and the CPU detector's.
    assert {"retinaface-weights", "ppocr-v6-det", "ppocr-v6-cls", "ppocr-v6-rec"} < names
    assert len(names) == 5
    before = sorted((p, p.stat().st_mtime_ns) for p in kept.iterdir())

    levels: list[object] = []
    real = onnx_session._load

    def load(model: object, name: str, options: ort.SessionOptions) -> object:
        levels.append(options.graph_optimization_level)
        return real(model, name, options)  # type: ignore[arg-type]

    monkeypatch.setattr(onnx_session, "_load", load)
    frame = np.asarray(render_text(["Keep refrigerated"])).copy()
    Eyes(eyes_config(), keep_models=False).look(frame, "what_is_this")
    # Each of the five loaded from its copy, nothing optimised again, nothing written.
    assert levels == [ort.GraphOptimizationLevel.ORT_DISABLE_ALL] * 5
    assert sorted((p, p.stat().st_mtime_ns) for p in kept.iterdir()) == before
