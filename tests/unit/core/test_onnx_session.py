"""Prepared models (`pendant.core.onnx_session`): `prepare` optimises a model for this machine
once and keeps the copy; `session(..., prepared=DIR)` loads the copy and never writes. A copy
that is damaged, a directory that cannot be written or a model that changed never stops a model
from loading. What it saves is `make bench`'s (tools/bench_eyes.py), not these tests'."""

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
from pendant.core.onnx_session import prepare, prepared_path, session
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


def test_a_prepared_copy_is_what_later_sessions_load(model: Path, tmp_path: Path) -> None:
    kept = tmp_path / "prepared"
    copy = prepare(model, "cls", kept)
    assert copy is not None and sorted(kept.iterdir()) == [copy]
    assert copy.name.startswith("ppocr-cls-") and copy == prepared_path(model, kept, None)
    made = session(model, "cls", prepared=kept)
    assert _level(made) == NOT_OPTIMISED  # read as it was kept: nothing optimised again
    np.testing.assert_allclose(_run(made), _run(session(model, "cls")), rtol=1e-5, atol=1e-6)
    assert prepare(model, "cls", kept) == copy  # a good copy is kept, not made again
    assert sorted(kept.iterdir()) == [copy]


def test_a_session_never_writes_a_copy(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    kept.mkdir()
    with caplog.at_level(logging.INFO, logger="pendant.core.onnx_session"):
        for _ in range(3):
            made = session(model, "cls", prepared=kept)
    assert _run(made).shape[0] == 2 and _level(made) != NOT_OPTIMISED  # the slow way
    assert list(kept.iterdir()) == []  # the eyes hold frames: they write nothing
    (line,) = [r.getMessage() for r in caplog.records]  # said once, not at every load
    assert line.startswith("cls: no copy prepared for this board") and "\n" not in line


def test_a_damaged_copy_is_loaded_around_and_prepared_again(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    copy = prepare(model, "cls", kept)
    assert copy is not None
    copy.write_bytes(copy.read_bytes()[:1000])  # what a failing card might leave
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        made = session(model, "cls", prepared=kept)
    assert _run(made).shape[0] == 2
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: its prepared copy") and "\n" not in line
    assert prepare(model, "cls", kept) == copy  # made again
    assert _level(session(model, "cls", prepared=kept)) == NOT_OPTIMISED


def test_a_directory_that_cannot_be_written_is_one_warning(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        assert prepare(model, "cls", blocked / "prepared") is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: not kept prepared") and "\n" not in line


def test_a_save_that_fails_keeps_nothing(
    model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = tmp_path / "prepared"
    kept.mkdir()
    copy = prepared_path(model, kept, None)
    # Where onnxruntime would write the copy there is a directory: its save fails, as on a
    # full card.
    (kept / f".{copy.name}.{os.getpid()}").mkdir()
    with caplog.at_level(logging.WARNING, logger="pendant.core.onnx_session"):
        assert prepare(model, "cls", kept) is None
    assert not copy.exists()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("cls: not kept prepared") and "\n" not in line
    assert _run(session(model, "cls", prepared=kept)).shape[0] == 2


def test_a_changed_model_is_prepared_again_and_the_old_copy_goes(
    model: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "prepared"
    old = prepare(model, "cls", kept)
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # an update
    assert _level(session(model, "cls", prepared=kept)) != NOT_OPTIMISED  # not the old copy
    new = prepare(model, "cls", kept)
    assert new is not None and new != old
    assert sorted(kept.iterdir()) == [new]


def test_half_written_copies_of_dead_writers_are_cleared(model: Path, tmp_path: Path) -> None:
    kept = tmp_path / "prepared"
    kept.mkdir()
    copy = prepared_path(model, kept, None)
    # Halves left when the power went: one whose writer is long gone (no such process), one
    # whose number is past any pid.
    for pid in (2**22 + 12345, 2**40):
        (kept / f".{copy.name}.{pid}").write_bytes(b"\0" * 1000)
    # One being written now by a process that is alive (this one's parent).
    alive = kept / f".{copy.name}.{os.getppid()}"
    alive.write_bytes(b"\0" * 1000)
    assert prepare(model, "cls", kept) == copy
    assert sorted(p.name for p in kept.iterdir()) == sorted([copy.name, alive.name])


def test_built_bytes_are_made_only_when_needed(tmp_path: Path) -> None:
    weights = model_path(eyes_config(), "retinaface")
    weights = weights / "weights.py" if weights.is_dir() else weights
    built: list[Path] = []

    def build(path: Path) -> bytes:
        built.append(path)
        return load_onnx_bytes(path)

    kept = tmp_path / "prepared"
    assert prepare(weights, "faces", kept, build) is not None
    assert len(built) == 1
    session(weights, "faces", prepared=kept, build=build)
    assert len(built) == 1  # the copy: no bytes built
    session(weights, "faces", build=build)
    assert len(built) == 2


def test_a_missing_model_is_one_line(tmp_path: Path) -> None:
    for call in (
        lambda: session(tmp_path / "gone.onnx", "gone.onnx", prepared=tmp_path / "prepared"),
        lambda: prepare(tmp_path / "gone.onnx", "gone.onnx", tmp_path / "prepared"),
    ):
        with pytest.raises(ModelError) as err:
            call()
        assert "gone.onnx" in str(err.value) and "\n" not in str(err.value)


def test_a_model_given_as_bytes_is_not_kept_by_its_session(model: Path) -> None:
    # onnxruntime's Python session would hold bytes it is given for its whole life (a model's
    # size more in every process that builds one): it gets a file in memory, closed once loaded.
    data = model.read_bytes()
    before = set(os.listdir("/proc/self/fd"))
    sess = session(data, "from bytes")
    assert getattr(sess, "_model_bytes", None) is None
    assert set(os.listdir("/proc/self/fd")) <= before
    with pytest.raises(ModelError, match=r"^broken: onnxruntime cannot load it"):
        session(b"not a model", "broken")


def test_no_memory_for_a_model_given_as_bytes_is_one_line(
    model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object) -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "memfd_create", refused)
    with pytest.raises(ModelError) as err:
        session(model.read_bytes(), "big")
    assert (
        str(err.value)
        == "big: cannot hold it in memory to load it: [Errno 12] Cannot allocate memory"
    )
