"""Prepared models (`pendant.core.onnx_session`): optimised for this machine on the first load,
kept, and loaded from there after; a copy that is damaged, a directory that cannot be written
or a model that changed never stops a model from loading. What it saves is `make bench`'s
(tools/bench_eyes.py), not these tests'."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.core.onnx_session import prepared_path, session
from pendant.eyes import OCR_MODEL
from pendant.eyes.faces import load_onnx_bytes
from tests.support.eyes_support import eyes_config

NOT_OPTIMISED = ort.GraphOptimizationLevel.ORT_DISABLE_ALL


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """The OCR's orientation classifier (small, real), in a folder of its own."""
    folder = tmp_path / "ppocr"
    folder.mkdir()
    return Path(shutil.copy(model_path(eyes_config(), OCR_MODEL) / "cls.onnx", folder))


def _run(made: object) -> np.ndarray:
    x = np.random.default_rng(0).random((2, 3, 80, 160), dtype=np.float32)
    return made.run(None, {made.get_inputs()[0].name: x})[0]  # type: ignore[attr-defined]


def _level(made: object) -> object:
    return made.get_session_options().graph_optimization_level  # type: ignore[attr-defined]


def test_the_first_load_keeps_a_copy_the_next_loads_it(model: Path, tmp_path: Path) -> None:
    kept = tmp_path / "prepared"
    first = session(model, "cls", prepared=kept)
    copies = list(kept.iterdir())
    assert [p.name for p in copies] == [prepared_path(model, kept, None).name]
    assert copies[0].name.startswith("ppocr-cls-")
    assert _level(first) != NOT_OPTIMISED  # optimised now, while the copy was made

    second = session(model, "cls", prepared=kept)
    assert _level(second) == NOT_OPTIMISED  # read as it was kept: nothing optimised again
    plain = session(model, "cls")
    np.testing.assert_allclose(_run(second), _run(plain), rtol=1e-5, atol=1e-6)
    assert list(kept.iterdir()) == copies


def test_a_damaged_copy_is_prepared_again(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    session(model, "cls", prepared=kept)
    copy = prepared_path(model, kept, None)
    copy.write_bytes(copy.read_bytes()[:1000])  # a power cut in the middle of a write
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        made = session(model, "cls", prepared=kept)
    assert _run(made).shape[0] == 2
    assert any("preparing it again" in r.getMessage() for r in caplog.records)
    assert _level(session(model, "cls", prepared=kept)) == NOT_OPTIMISED  # whole again


def test_a_directory_that_cannot_be_written_only_costs_time(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        made = session(model, "cls", prepared=blocked / "prepared")
    assert _run(made).shape[0] == 2
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: not kept prepared") and "\n" not in line


def test_a_save_that_fails_still_loads_the_model(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    kept.mkdir()
    copy = prepared_path(model, kept, None)
    # Where onnxruntime would write the copy there is a directory: its save fails, as on a
    # full card.
    (kept / f".{copy.name}.{os.getpid()}").mkdir()
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        made = session(model, "cls", prepared=kept)
    assert _run(made).shape[0] == 2
    assert not copy.exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: not kept prepared") and "\n" not in line


def test_a_changed_model_is_prepared_again_and_the_old_copy_goes(
    model: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "prepared"
    session(model, "cls", prepared=kept)
    old = prepared_path(model, kept, None)
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # an update
    new = prepared_path(model, kept, None)
    assert new != old
    made = session(model, "cls", prepared=kept)
    assert _level(made) != NOT_OPTIMISED
    assert sorted(kept.iterdir()) == [new]


def test_built_bytes_are_made_only_to_prepare(tmp_path: Path) -> None:
    weights = model_path(eyes_config(), "retinaface")
    weights = weights / "weights.py" if weights.is_dir() else weights
    built: list[Path] = []

    def build(path: Path) -> bytes:
        built.append(path)
        return load_onnx_bytes(path)

    kept = tmp_path / "prepared"
    session(weights, "faces", prepared=kept, build=build)
    session(weights, "faces", prepared=kept, build=build)
    assert built == [weights]
    # Unprepared, the bytes are built every time.
    session(weights, "faces", build=build)
    assert len(built) == 2


def test_a_missing_model_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        session(tmp_path / "gone.onnx", "gone.onnx", prepared=tmp_path / "prepared")
    assert "gone.onnx" in str(err.value) and "\n" not in str(err.value)


def test_a_directory_only_read_is_used_and_never_written(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    session(model, "cls", prepared=kept)  # as pendant-eyes-prepare.service does
    copy = prepared_path(model, kept, None)
    # The eyes' view of it: read-only (ProtectSystem=strict). These tests may run as root,
    # whom file modes do not stop, so the refusal is os.access's.
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK)
    assert _level(session(model, "cls", prepared=kept)) == NOT_OPTIMISED  # the copy is read
    copy.unlink()
    with caplog.at_level(logging.INFO, logger="pendant.core.onnx_session"):
        made = session(model, "cls", prepared=kept)
    assert _run(made).shape[0] == 2 and _level(made) != NOT_OPTIMISED
    assert list(kept.iterdir()) == []  # loaded the slow way, nothing written
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: no copy prepared for this board") and "\n" not in line


def test_half_written_copies_of_dead_writers_are_cleared(model: Path, tmp_path: Path) -> None:
    kept = tmp_path / "prepared"
    kept.mkdir()
    copy = prepared_path(model, kept, None)
    # A copy half written when the power went (its writer is long gone: no such process).
    dead = kept / f".{copy.name}.{2**22 + 12345}"
    dead.write_bytes(b"\0" * 1000)
    # One being written now by a process that is alive (this one, here).
    alive = kept / f".{copy.name}.{os.getppid()}"
    alive.write_bytes(b"\0" * 1000)
    session(model, "cls", prepared=kept)
    assert sorted(p.name for p in kept.iterdir()) == sorted([copy.name, alive.name])
