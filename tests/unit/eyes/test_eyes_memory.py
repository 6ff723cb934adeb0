"""How the eyes hold their models: the reader's way (`Eyes(..., keep_models=False)`) loads one
model at a time and releases it before the next; sessions run without onnxruntime's arena; the
reader's malloc gives back what a released model freed. What it saves is `make bench`'s
(tools/bench_eyes.py), not these tests'."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pendant.core import onnx_session
from pendant.core.config import Config
from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.eyes import OCR_MODEL
from pendant.eyes import reader as reader_module
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config, face_image, normalise, render_text


@pytest.fixture(scope="module")
def config() -> Config:
    return eyes_config()


class Sessions:
    """onnxruntime sessions as the eyes make them, watched: which loaded, in what order, and how
    many were alive at once (a session is alive until the last reference to it goes)."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.alive = 0
        self.most_alive = 0

    def make(self, model: Path | bytes, name: str, threads: int = 1, **how: Any) -> Any:
        made = REAL_SESSION(model, name, threads, **how)
        self.loaded.append(Path(name).name)
        self.alive += 1
        self.most_alive = max(self.most_alive, self.alive)
        weakref.finalize(made, self._released)
        return made

    def _released(self) -> None:
        self.alive -= 1


REAL_SESSION = onnx_session.session


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sessions]:
    watched = Sessions()
    monkeypatch.setattr(onnx_session, "session", watched.make)
    yield watched


def _label() -> np.ndarray:
    return np.asarray(render_text(["Keep refrigerated", "after opening"])).copy()


def test_a_reader_holds_one_model_at_a_time_and_none_after_a_look(
    config: Config, sessions: Sessions
) -> None:
    eyes = Eyes(config, keep_models=False)
    assert sessions.loaded == []  # checked, not loaded
    seen = eyes.look(_label(), "what_is_this")
    assert normalise(seen.scene.text) == "keep refrigerated after opening"
    # Face guard, then OCR's three, then the detector: each gone before the next loaded.
    assert sessions.loaded[0] == "weights.py"
    assert sessions.loaded[1:4] == ["det.onnx", "cls.onnx", "rec.onnx"]
    assert len(sessions.loaded) == 5
    assert sessions.most_alive == 1
    assert sessions.alive == 0
    assert eyes.detector_name == "CpuDetector"


def test_prepare_loads_the_face_guard_ahead_and_the_look_releases_it(
    config: Config, sessions: Sessions
) -> None:
    eyes = Eyes(config, keep_models=False)
    eyes.prepare()
    assert sessions.loaded == ["weights.py"] and sessions.alive == 1
    frame = face_image().copy()
    assert eyes.look(frame, "capture").scene.face_count == 1
    assert sessions.loaded.count("weights.py") == 1  # the one loaded ahead was used
    assert sessions.most_alive == 1 and sessions.alive == 0


def test_kept_models_stay_loaded_between_looks(config: Config, sessions: Sessions) -> None:
    eyes = Eyes(config)
    loaded = len(sessions.loaded)
    assert loaded == 5 and sessions.alive == 5
    eyes.look(_label(), "what_is_this")
    eyes.look(_label(), "capture")
    assert len(sessions.loaded) == loaded  # nothing loaded again


def test_loaded_one_at_a_time_reads_what_kept_models_read(config: Config) -> None:
    kept, lean = Eyes(config), Eyes(config, keep_models=False)
    for lines, font_px in ((["PARACETAMOL 500 mg", "Take 2 tablets"], 28), (["EXIT"], 90)):
        frame = np.asarray(render_text(lines, font_px=font_px))
        a = kept.look(frame.copy(), "what_is_this").scene
        b = lean.look(frame.copy(), "what_is_this").scene
        assert (a.text, a.face_count, a.labels) == (b.text, b.face_count, b.labels)


def test_a_model_that_will_not_load_fails_the_warm_up(
    config: Config, sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse_rec(model: Path | bytes, name: str, threads: int = 1, **how: Any) -> Any:
        if name.endswith("rec.onnx"):
            raise ModelError(f"{name}: onnxruntime cannot load it: broken")
        return sessions.make(model, name, threads, **how)

    monkeypatch.setattr(onnx_session, "session", refuse_rec)
    eyes = Eyes(config, keep_models=False)  # only checked: nothing fails yet
    with pytest.raises(ModelError) as err:
        eyes.warm_up()
    assert "rec.onnx" in str(err.value) and "\n" not in str(err.value)
    assert sessions.alive == 0


def test_sessions_run_without_the_arena_or_memory_patterns(config: Config) -> None:
    made = REAL_SESSION(model_path(config, OCR_MODEL) / "cls.onnx", "cls.onnx")
    options = made.get_session_options()
    assert not options.enable_cpu_mem_arena
    assert not options.enable_mem_pattern
    assert options.intra_op_num_threads == 1


def test_the_readers_malloc_gives_freed_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")  # a setting of the machine's own is kept
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    env = reader_module.reader_environment()
    assert env["MALLOC_MMAP_THRESHOLD_"] == "262144"  # fixed: large blocks are unmapped freed
    assert env["MALLOC_ARENA_MAX"] == "4"
    assert "NOTIFY_SOCKET" not in env
