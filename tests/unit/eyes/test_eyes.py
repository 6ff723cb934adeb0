"""The eyes without the bus: OCR, the face guard, detector backends (`pendant look` is
tests/system/test_eyes_look.py's)."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config, DetectorConfig
from pendant.core.state import MuteMemory
from pendant.eyes import detectors
from pendant.eyes.camera import FileCamera, demo_images
from pendant.eyes.detectors import coral, create_detector
from pendant.eyes.detectors.coral import CoralDetector
from pendant.eyes.detectors.cpu import CpuDetector
from pendant.eyes.detectors.hailo import HailoDetector
from pendant.eyes.detectors.imx500 import Imx500Detector
from pendant.eyes.ocr import clean
from pendant.eyes.pipeline import Eyes
from tests.support.eyes_support import eyes_config, face_image, normalise, render_text, save_png


@pytest.fixture(scope="module")
def config() -> Config:
    return eyes_config()


@pytest.fixture(scope="module")
def eyes(config: Config) -> Eyes:
    return Eyes(config)


@pytest.mark.parametrize(
    ("lines", "font_px"),
    [
        (["Keep refrigerated", "after opening"], 36),
        (["PARACETAMOL 500 mg", "Take 2 tablets every 4 hours"], 28),
        (["Platform 4", "Trains to Cambridge"], 44),
        (["EXIT"], 90),
    ],
)
def test_rendered_text_is_read(eyes: Eyes, lines: list[str], font_px: int) -> None:
    frame = np.asarray(render_text(lines, font_px=font_px)).copy()
    seen = eyes.look(frame, "read_this")
    assert normalise(seen.scene.text) == normalise(" ".join(lines))
    (intent,) = seen.intents
    assert intent.name == "ReadText"
    assert normalise(intent.slots[0].value) == normalise(" ".join(lines))  # type: ignore[arg-type]
    assert intent.slots[0].entity == "ocr" and len(intent.slots[0].raw_value) <= 100
    assert intent.session_id == seen.scene.session_id


def test_bundled_demo_images_read_as_rendered(eyes: Eyes) -> None:
    from pendant.eyes.images import load_image

    texts = [normalise(eyes.look(load_image(p), "capture").scene.text) for p in demo_images()]
    assert "organic oat milk best before 12 mar 2027" in texts
    assert len(texts) >= 3 and all(texts)


def test_faces_are_counted_and_masked_never_reported(eyes: Eyes) -> None:
    frame = face_image().copy()
    assert len(eyes.guard.find(frame)) == 1
    seen = eyes.look(frame, "what_is_this")
    assert seen.scene.face_count == 1
    # Masked in place: the guard finds nothing left in what the other models saw.
    assert len(eyes.guard.find(frame)) == 0
    payload = json.loads(seen.scene.to_json())
    assert set(payload) <= {
        "type", "version", "id", "device_id", "timestamp_ms", "trigger", "face_count", "text",
        "labels", "session_id",
    }  # fmt: skip
    two = np.hstack([face_image(), face_image()[:, ::-1]])
    assert eyes.look(two, "capture").scene.face_count == 2


def test_blank_frame_gives_an_empty_scene(eyes: Eyes) -> None:
    seen = eyes.look(np.full((480, 640, 3), 255, np.uint8), "read_this")
    assert seen.scene.text is None and seen.scene.face_count == 0
    assert seen.intents[0].text == ""


def test_warm_up_runs_each_model_once_and_names_each_step(eyes: Eyes) -> None:
    # The eyes service hands each step to systemd (STATUS= and more start-up time), so a slow
    # board still warming up is not restarted by TimeoutStartSec= half-way.
    steps: list[str] = []
    eyes.warm_up(steps.append)
    assert steps == [
        "warming up the face guard",
        "warming up the text reader",
        "warming up the detector",
    ]


def test_text_is_cleaned_of_blobs_and_control_characters() -> None:
    assert clean("a\x00b  c") == "a b c"
    assert clean("serial " + "A1b2" * 15 + " ok") == "serial ok"


def test_file_camera_cycles_and_counts_opens(tmp_path: Path) -> None:
    a = save_png(render_text(["one"]), tmp_path / "a.png")
    b = save_png(render_text(["two"], size=(1280, 960)), tmp_path / "b.png")
    camera = FileCamera([a, b], 640, 480)
    shapes = [camera.capture().shape for _ in range(3)]
    assert shapes == [(480, 640, 3)] * 3 and camera.opens == 3


def test_camera_mute_is_remembered_apart_from_the_mic(tmp_path: Path) -> None:
    mic, cam = MuteMemory(str(tmp_path)), MuteMemory(str(tmp_path), key="camera")
    cam.save(True)
    assert cam.load() is True and mic.load() is False
    mic.save(True)
    cam.save(False)
    assert mic.load() is True and cam.load() is False


# --- detector backends, through the one registry --------------------------------------------


def _with_detector(config: Config, **detector: object) -> Config:
    eyes = config.eyes.model_copy(update={"detector": DetectorConfig(**detector)})
    return config.model_copy(update={"eyes": eyes})


@pytest.fixture
def no_accelerators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No device nodes, no delegate library: this machine as it is, made certain."""
    for cls in (HailoDetector, CoralDetector, Imx500Detector):
        monkeypatch.setattr(cls, "device_paths", (str(tmp_path / f"absent-{cls.type}"),))
    monkeypatch.setattr(coral, "DELEGATE_GLOBS", (str(tmp_path / "absent-libedgetpu.so.1"),))
    return tmp_path


def test_auto_without_accelerators_is_the_cpu(config: Config, no_accelerators: Path) -> None:
    assert type(create_detector(_with_detector(config, type="auto"))) is CpuDetector
    assert set(detectors.DETECTORS) == {"cpu", "hailo", "coral", "imx500"}


@pytest.mark.parametrize("kind", ["hailo", "coral", "imx500"])
def test_missing_accelerator_falls_back_to_cpu_with_one_warning(
    config: Config, no_accelerators: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="pendant.eyes.detectors"):
        detector = create_detector(_with_detector(config, type=kind, model="m"))
    assert type(detector) is CpuDetector
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and kind in warnings[0] and "CPU" in warnings[0]


class _FakeHailo(types.ModuleType):
    """Enough of hailo_platform for HailoDetector: one input, per-class NMS output."""

    def __init__(self) -> None:
        super().__init__("hailo_platform")
        info = types.SimpleNamespace(name="in", shape=(64, 64, 3))
        group = types.SimpleNamespace(activate=lambda params: _Null(), create_params=lambda: None)
        self.HEF = lambda path: types.SimpleNamespace(get_input_vstream_infos=lambda: [info])
        self.VDevice = lambda: types.SimpleNamespace(
            configure=lambda hef, params: [group], release=lambda: None
        )
        self.ConfigureParams = types.SimpleNamespace(create_from_hef=lambda hef, interface: None)
        self.HailoStreamInterface = types.SimpleNamespace(PCIe="pcie")
        self.FormatType = types.SimpleNamespace(UINT8="u8", FLOAT32="f32")
        self.InputVStreamParams = types.SimpleNamespace(make=lambda g, format_type: None)
        self.OutputVStreamParams = types.SimpleNamespace(make=lambda g, format_type: None)
        cup = np.array([[0.1, 0.1, 0.5, 0.5, 0.9]], np.float32)
        per_class = [np.empty((0, 5), np.float32)] * 41 + [cup]  # COCO 41: cup
        self.InferVStreams = lambda g, i, o: _Null(infer=lambda inputs: {"out": [per_class]})


class _Null:
    def __init__(self, **attrs: object) -> None:
        self.__dict__.update(attrs)

    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_auto_picks_a_present_hailo(
    config: Config, no_accelerators: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = no_accelerators / "hailo0"
    node.touch()
    monkeypatch.setattr(HailoDetector, "device_paths", (str(node),))
    monkeypatch.setitem(sys.modules, "hailo_platform", _FakeHailo())
    detector = create_detector(_with_detector(config, type="auto", model="yolov8n.hef"))
    assert type(detector) is HailoDetector
    found = detector.detect(np.zeros((480, 640, 3), np.uint8))
    assert [(d.label, round(d.score, 2)) for d in found] == [("cup", 0.9)]


def test_present_accelerator_that_will_not_load_falls_back(
    config: Config,
    no_accelerators: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = no_accelerators / "apex_0"
    node.touch()
    monkeypatch.setattr(CoralDetector, "device_paths", (str(node),))
    litert = types.ModuleType("ai_edge_litert.interpreter")

    def no_delegate(name: str) -> None:
        raise ValueError(f"Failed to load delegate from {name}")

    litert.load_delegate = no_delegate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ai_edge_litert", types.ModuleType("ai_edge_litert"))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", litert)
    with caplog.at_level(logging.WARNING, logger="pendant.eyes.detectors"):
        detector = create_detector(_with_detector(config, type="coral", model="ssd.tflite"))
    assert type(detector) is CpuDetector
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "libedgetpu.so.1" in warning and "CPU" in warning
