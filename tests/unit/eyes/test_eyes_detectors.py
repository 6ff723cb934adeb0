"""The CPU detector's output parsers, on tiny ONNX models made here, and the real COCO model
(YOLOX-Nano) on real photos.

Each synthetic model ignores its input and outputs known tensors, so what comes out after the
letterbox, the parser and NMS can be checked to the pixel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pendant.core.config import Config, DetectorConfig
from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.eyes.detectors import COCO, Detection, create_detector
from pendant.eyes.detectors.boxes import Raw, letterbox, select
from pendant.eyes.detectors.cpu import COCO_MODEL, CpuDetector
from pendant.eyes.detectors.ssd import COCO_TF
from pendant.eyes.detectors.yolox import cells

onnx = pytest.importorskip("onnx")


def _model(
    path: Path,
    outputs: dict[str, np.ndarray],
    input_shape: tuple[int, ...] = (1, 3, 64, 64),
    uint8: bool = False,
    meta: dict[str, str] | None = None,
) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    elem = TensorProto.UINT8 if uint8 else TensorProto.FLOAT
    nodes, consts, values = [], [], []
    for name, array in outputs.items():
        consts.append(numpy_helper.from_array(np.asarray(array, np.float32), f"{name}_const"))
        nodes.append(helper.make_node("Identity", [f"{name}_const"], [name]))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))
    image = helper.make_tensor_value_info("images", elem, list(input_shape))
    graph = helper.make_graph(nodes, "fixed", [image], values, consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if meta:
        helper.set_model_props(model, meta)
    path.write_bytes(model.SerializeToString())
    return path


def _cpu(model: Path | str, **detector: object) -> CpuDetector:
    config = Config()
    options = {"type": "cpu", "model": str(model), "min_score": 0.3, **detector}
    eyes = config.eyes.model_copy(update={"detector": DetectorConfig(**options)})  # type: ignore[arg-type]
    detector_ = create_detector(config.model_copy(update={"eyes": eyes}))
    assert isinstance(detector_, CpuDetector)
    return detector_


def _seen(found: list[Detection]) -> list[tuple[str, float, list[int]]]:
    return [(d.label, round(d.score, 3), [round(v) for v in d.box or ()]) for d in found]


# --- letterbox --------------------------------------------------------------------------------


def test_letterbox_fits_centres_and_maps_back() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    image, geometry = letterbox(frame, 320, 320)
    assert image.shape == (320, 320, 3)
    assert (geometry.scale_x, geometry.scale_y, geometry.pad_x, geometry.pad_y) == (
        0.5,
        0.5,
        0.0,
        40.0,
    )
    assert (image[:40] == 114).all() and (image[280:] == 114).all() and (image[40:280] == 0).all()
    back = geometry.to_frame(np.array([[0, 40, 320, 280], [10, 50, 30, 90]], np.float32), 640, 480)
    assert back.tolist() == [[0, 0, 640, 480], [20, 20, 60, 100]]
    # Outside the picture (on the grey bars) is clipped to the frame.
    assert geometry.to_frame(np.array([[-8, 0, 400, 300]], np.float32), 640, 480).tolist() == [
        [0, 0, 640, 480]
    ]
    tall, geometry = letterbox(np.zeros((200, 100, 3), np.uint8), 64, 64)
    assert (geometry.pad_x, geometry.pad_y, geometry.scale_x) == (16.0, 0.0, 0.32)
    assert (tall[:, :16] == 114).all() and (tall[:, 16:48] == 0).all()


def test_nms_is_per_class_and_keeps_the_best() -> None:
    raw = Raw(
        boxes=np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], float),
        scores=np.array([0.8, 0.9, 0.7, 0.2]),
        classes=np.array([0, 0, 1, 0]),
    )
    assert select(raw, min_score=0.3, iou=0.45) == [1, 2]


# --- YOLO -------------------------------------------------------------------------------------


def _xywh_rows(rows: list[tuple[float, ...]]) -> np.ndarray:
    return np.array(rows, np.float32)


def test_yolov8_output_with_ultralytics_names(tmp_path: Path) -> None:
    # [1, 4 + nc, N]: columns are candidates. Model input 64x64; the frame 128x128 (scale 0.5).
    candidates = _xywh_rows(
        [
            (32, 32, 20, 20, 0.90, 0.0, 0.0),  # cup
            (33, 33, 20, 20, 0.80, 0.0, 0.0),  # the same cup, weaker: NMS drops it
            (32, 32, 20, 20, 0.0, 0.0, 0.60),  # a dog in the same place: another class, kept
            (10, 50, 8, 12, 0.0, 0.70, 0.0),  # person
            (50, 10, 8, 8, 0.0, 0.0, 0.10),  # too weak
        ]
    )
    path = _model(
        tmp_path / "v8.onnx",
        {"output0": candidates.T[None]},
        meta={"names": "{0: 'cup', 1: 'person', 2: 'dog'}", "task": "detect"},
    )
    detector = _cpu(path)
    assert detector.format == "yolo" and detector.labels == ("cup", "person", "dog")
    found = detector.detect(np.zeros((128, 128, 3), np.uint8))
    assert _seen(found) == [
        ("cup", 0.9, [44, 44, 84, 84]),
        ("person", 0.7, [12, 88, 28, 112]),
        ("dog", 0.6, [44, 44, 84, 84]),
    ]


def test_yolov5_output_with_objectness_and_letterbox(tmp_path: Path) -> None:
    # [1, N, 5 + nc], no names: COCO's 80. Frame 64 high, 128 wide: scale 0.5, 16 px bars.
    rows = np.zeros((3, 85), np.float32)
    rows[0, :5] = (32, 32, 16, 16, 0.9)
    rows[0, 5 + 41] = 0.8  # cup: 0.9 * 0.8
    rows[1, :5] = (33, 32, 16, 16, 0.5)
    rows[1, 5 + 41] = 0.9  # the same cup, 0.45: suppressed
    rows[2, :5] = (10, 30, 4, 4, 0.2)
    rows[2, 5 + 0] = 1.0  # a person at 0.2: under min_score
    detector = _cpu(_model(tmp_path / "v5.onnx", {"output": rows[None]}))
    assert detector.format == "yolo" and detector.labels == COCO
    found = detector.detect(np.zeros((64, 128, 3), np.uint8))
    assert _seen(found) == [("cup", 0.72, [48, 16, 80, 48])]


def test_end_to_end_yolo_output_skips_nms(tmp_path: Path) -> None:
    rows = np.array([[8, 8, 24, 24, 0.9, 41], [9, 9, 25, 25, 0.8, 41], [0, 0, 1, 1, 0, 0]])
    detector = _cpu(_model(tmp_path / "v10.onnx", {"output0": rows[None].astype(np.float32)}))
    found = detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert _seen(found) == [("cup", 0.9, [8, 8, 24, 24]), ("cup", 0.8, [9, 9, 25, 25])]


def test_labels_file_and_forced_format(tmp_path: Path) -> None:
    candidates = _xywh_rows([(32, 32, 20, 20, 0.1, 0.95)])
    path = _model(tmp_path / "custom.onnx", {"out": candidates.T[None]})
    labels = tmp_path / "labels.txt"
    labels.write_text("keys\nwallet\n")
    detector = _cpu(path, labels=str(labels), format="yolo")
    assert _seen(detector.detect(np.zeros((64, 64, 3), np.uint8))) == [
        ("wallet", 0.95, [22, 22, 42, 42])
    ]


# --- YOLOX -----------------------------------------------------------------------------------


def test_yolox_grid_rows_decoded_onto_a_top_left_letterbox(tmp_path: Path) -> None:
    # Input 64x64: 8x8 + 4x4 + 2x2 = 84 rows of dx, dy, log w, log h, objectness, 80 classes.
    rows = np.zeros((cells(64, 64), 85), np.float32)
    rows[:, 2:4] = -5.0  # every other cell a speck, with no score
    rows[1 * 8 + 3, :5] = (0.5, 0.5, np.log(2), 0.0, 0.9)  # stride 8, cell (3, 1): 16 x 8 px
    rows[1 * 8 + 3, 5 + 41] = 0.8  # cup: 0.9 * 0.8
    rows[1 * 8 + 4, :5] = (-0.4, 0.5, np.log(2), 0.0, 0.5)  # the same cup from the next cell
    rows[1 * 8 + 4, 5 + 41] = 0.9  # 0.45: suppressed
    rows[64 + 1, :5] = (0.0, 0.5, 0.0, 0.0, 0.7)  # stride 16, cell (1, 0): 16 x 16 px
    rows[64 + 1, 5 + 0] = 1.0  # person
    detector = _cpu(_model(tmp_path / "yolox.onnx", {"output": rows[None]}))
    assert detector.format == "yolox" and detector.labels == COCO
    # Frame 128 wide, 64 high: scale 0.5, the picture at the top left, grey below it.
    found = detector.detect(np.zeros((64, 128, 3), np.uint8))
    assert _seen(found) == [("cup", 0.72, [40, 16, 72, 32]), ("person", 0.7, [16, 0, 48, 32])]


def test_yolox_input_is_bgr_0_to_255_at_the_top_left() -> None:
    from pendant.eyes.detectors import yolox
    from pendant.eyes.detectors.boxes import InputSpec

    frame = np.zeros((32, 64, 3), np.uint8)
    frame[..., 0] = 200  # red
    x, geometry = yolox.prepare(frame, InputSpec(64, 64))
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert (geometry.pad_x, geometry.pad_y) == (0.0, 0.0)
    assert (x[0, 2, :32] == 200).all() and (x[0, 0, :32] == 0).all()  # red is the last channel
    assert (x[0, :, 32:] == 114).all()  # grey below the picture


# --- SSD --------------------------------------------------------------------------------------


def test_ssd_boxes_and_scores_with_background(tmp_path: Path) -> None:
    boxes = np.array([[0.25, 0.25, 0.75, 0.75], [0.26, 0.26, 0.76, 0.76], [0, 0, 0.1, 0.1]])
    scores = np.zeros((3, 81), np.float32)
    scores[:, 0] = 0.99  # background everywhere: never a label
    scores[0, 1 + 41] = 0.8  # cup
    scores[1, 1 + 41] = 0.7  # the same cup
    scores[2, 1 + 0] = 0.6  # person
    path = _model(
        tmp_path / "ssd.onnx",
        {"boxes": boxes[None].astype(np.float32), "scores": scores[None]},
        input_shape=(1, 3, 32, 32),
    )
    detector = _cpu(path)
    assert detector.format == "ssd" and detector.labels[0] == "background"
    found = detector.detect(np.zeros((100, 200, 3), np.uint8))  # resized, not letterboxed
    assert _seen(found) == [("cup", 0.8, [50, 25, 150, 75]), ("person", 0.6, [0, 0, 20, 10])]


def test_ssd_tensorflow_outputs(tmp_path: Path) -> None:
    outputs = {
        "detection_boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0, 0, 1, 1]]]),
        "detection_classes": np.array([[47.0, 1.0, 18.0]]),
        "detection_scores": np.array([[0.9, 0.8, 0.95]]),
        "num_detections": np.array([2.0]),  # the third row is padding
    }
    path = _model(
        tmp_path / "tf.onnx",
        {k: v.astype(np.float32) for k, v in outputs.items()},
        input_shape=(1, 300, 300, 3),
        uint8=True,
    )
    detector = _cpu(path)
    assert detector.spec.dtype == "uint8" and not detector.spec.nchw
    assert detector.labels is COCO_TF and COCO_TF[47] == "cup" and COCO_TF[90] == "toothbrush"
    found = detector.detect(np.zeros((100, 100, 3), np.uint8))
    assert _seen(found) == [("cup", 0.9, [20, 10, 60, 50]), ("person", 0.8, [0, 0, 100, 100])]


def test_detection_output_layout(tmp_path: Path) -> None:
    rows = np.array([[[[0, 47, 0.9, 0.0, 0.0, 0.5, 0.5], [0, 0, 0.99, 0, 0, 1, 1]]]], np.float32)
    detector = _cpu(_model(tmp_path / "do.onnx", {"detection_out": rows}))
    assert _seen(detector.detect(np.zeros((40, 40, 3), np.uint8))) == [("cup", 0.9, [0, 0, 20, 20])]


# --- PicoDet ----------------------------------------------------------------------------------


def test_picodet_heads(tmp_path: Path) -> None:
    size, bins, outputs = 64, 8, {}
    levels = [(size // s) ** 2 for s in (8, 16, 32, 64)]
    for i, n in enumerate(levels):
        outputs[f"scores_{i}"] = np.zeros((1, n, 2), np.float32)
    for i, n in enumerate(levels):
        dist = np.full((1, n, 4 * bins), -20.0, np.float32)
        dist.reshape(1, n, 4, bins)[..., 2] = 20.0  # every side 2 bins: 16 px at stride 8
        outputs[f"boxes_{i}"] = dist
    cell = 3 * 8 + 3  # row 3, column 3 of the stride-8 grid: centre (28, 28)
    outputs["scores_0"][0, cell, 1] = 0.85
    path = _model(tmp_path / "pico.onnx", outputs, meta={"character": "text\ntitle"})
    detector = _cpu(path)
    assert detector.format == "picodet" and detector.labels == ("text", "title")
    found = detector.detect(np.zeros((64, 64, 3), np.uint8))
    assert _seen(found) == [("title", 0.85, [12, 12, 44, 44])]


# --- errors -----------------------------------------------------------------------------------


def test_missing_user_model_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "mine.onnx"
    with pytest.raises(ModelError) as err:
        _cpu(missing)
    assert "\n" not in str(err.value) and str(missing) in str(err.value)
    for other in ("ssd.tflite", "frozen_inference_graph.pb"):  # no TensorFlow graphs any more
        with pytest.raises(ModelError) as err:
            _cpu(other)
        assert "\n" not in str(err.value) and ".onnx" in str(err.value)


def test_unknown_output_layout_names_the_setting(tmp_path: Path) -> None:
    path = _model(tmp_path / "odd.onnx", {"logits": np.zeros((1, 10), np.float32)})
    with pytest.raises(ModelError) as err:
        _cpu(path)
    assert "\n" not in str(err.value) and "eyes.detector.format" in str(err.value)


# --- the real COCO model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def coco() -> CpuDetector:
    from tests.conftest import demo_config

    config = demo_config()
    try:
        model_path(config, COCO_MODEL)
    except ModelError as exc:
        pytest.skip(f"{COCO_MODEL} is not in the cache: {exc}")
    chosen = DetectorConfig(type="cpu", model=COCO_MODEL)
    eyes = config.eyes.model_copy(update={"detector": chosen})
    detector = create_detector(config.model_copy(update={"eyes": eyes}))
    assert isinstance(detector, CpuDetector)
    return detector


# Photos inside scikit-image's wheel: where the object is, as a fraction of width and height.
SEEN = {
    "astronaut": ("person", (0.02, 0.04, 0.72, 0.99)),
    "coffee": ("cup", (0.27, 0.04, 0.70, 0.74)),
    "chelsea": ("cat", (0.0, 0.0, 1.0, 1.0)),
}


@pytest.mark.parametrize("image", sorted(SEEN))
def test_coco_model_names_what_it_sees(coco: CpuDetector, image: str) -> None:
    data = pytest.importorskip("skimage.data")
    frame = np.asarray(getattr(data, image)())
    h, w = frame.shape[:2]
    label, (x1, y1, x2, y2) = SEEN[image]
    found = coco.detect(frame.copy())
    assert coco.format == "yolox" and coco.model.output_shapes == [(1, 3549, 85)]
    assert found and found[0].label == label, _seen(found)
    box = np.array(found[0].box) / [w, h, w, h]
    # The box is where the object is, to within 5 % of the frame on each side.
    assert np.abs(box - [x1, y1, x2, y2]).max() < 0.05, (box.round(2), _seen(found))


def test_coco_model_finds_nothing_in_a_blank_frame(coco: CpuDetector) -> None:
    assert coco.detect(np.full((480, 640, 3), 255, np.uint8)) == []
