"""SSD outputs: boxes and per-class scores, sometimes already through the model's own NMS.

- boxes [1, N, 4] (x1, y1, x2, y2, normalised or in pixels) + scores [1, N, nc]; a first
  "background" column when nc is 81 or 91 (or one more than the labels).
- TensorFlow's four outputs: detection_boxes [1, N, 4] (y1, x1, y2, x2, normalised),
  detection_classes [1, N] (TF's 1-based COCO ids), detection_scores [1, N], num_detections.
- A DetectionOutput layer (Caffe-style SSD exports): [1, 1, N, 7] rows of
  image id, class id (1-based, 0 the background), score, x1, y1, x2, y2 normalised.

Input: the frame resized to the model's size (SSDs are trained without a letterbox).
"""

from __future__ import annotations

import numpy as np

from pendant.eyes.detectors import COCO
from pendant.eyes.detectors.boxes import Geometry, InputSpec, Raw, stretch, to_tensor

# TensorFlow's COCO label map numbers the 80 classes 1..90, with these ids left unused.
_TF_GAPS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})


def _tf_coco() -> tuple[str, ...]:
    names = iter(COCO)
    ids = range(1, 91)
    return ("background", *(f"class_{i}" if i in _TF_GAPS else next(names) for i in ids))


COCO_TF: tuple[str, ...] = _tf_coco()
"""Indexed by TensorFlow's COCO id: COCO_TF[47] == "cup"."""


def prepare(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """The model's input (the frame resized to `spec`, no letterbox) and the geometry back to the
    frame."""
    image, geometry = stretch(frame, spec.width, spec.height)
    return to_tensor(image, spec), geometry


def layout(shapes: list[tuple[int, ...]], names: list[str]) -> str | None:
    """Which SSD layout these outputs are: "tf", "detection_output", "boxes_scores" or None."""
    lowered = [n.lower() for n in names]
    if any("detection_boxes" in n for n in lowered) and any(
        "detection_scores" in n for n in lowered
    ):
        return "tf"
    if len(shapes) == 1 and len(shapes[0]) == 4 and shapes[0][-1] == 7:
        return "detection_output"
    pair = len(shapes) == 2 and all(len(s) == 3 for s in shapes)
    if pair and 4 in (shapes[0][-1], shapes[1][-1]):
        return "boxes_scores"
    return None


def default_labels(shapes: list[tuple[int, ...]], names: list[str]) -> tuple[str, ...]:
    """The labels a COCO SSD of this layout means when none are given."""
    kind = layout(shapes, names)
    if kind in ("tf", "detection_output"):
        return COCO_TF
    if kind == "boxes_scores":
        nc = next(s[-1] for s in shapes if s[-1] != 4) if shapes[0][-1] == 4 else shapes[0][-1]
        if nc == 91:
            return COCO_TF
        if nc == 81:
            return ("background", *COCO)
    return COCO


def decode(
    outputs: list[np.ndarray], names: list[str], spec: InputSpec, labels: tuple[str, ...]
) -> Raw:
    """The outputs of an SSD `layout` as Raw boxes in the input's pixels, never of the "background"
    class when `labels` start with it; ValueError for outputs of no layout this reads."""
    shapes = [tuple(o.shape) for o in outputs]
    kind = layout(shapes, names)
    scale = np.array([spec.width, spec.height] * 2, dtype=np.float32)
    if kind == "tf":
        by_name = {n.lower(): o for n, o in zip(names, outputs, strict=True)}

        def get(part: str) -> np.ndarray:
            return next(v for k, v in by_name.items() if part in k)

        boxes = np.asarray(get("detection_boxes"), np.float32).reshape(-1, 4)
        scores = np.asarray(get("detection_scores"), np.float32).reshape(-1)
        classes = np.asarray(get("detection_classes")).reshape(-1).astype(np.int64)
        count = [v for k, v in by_name.items() if "num_detections" in k]
        n = int(np.asarray(count[0]).reshape(-1)[0]) if count else len(scores)
        boxes, scores, classes = boxes[:n], scores[:n], classes[:n]
        return _drop_background(Raw(boxes[:, [1, 0, 3, 2]] * scale, scores, classes, True), labels)
    if kind == "detection_output":
        rows = np.asarray(outputs[0], np.float32).reshape(-1, 7)
        raw = Raw(rows[:, 3:7] * scale, rows[:, 2].copy(), rows[:, 1].astype(np.int64), True)
        return _drop_background(raw, labels)
    if kind == "boxes_scores":
        a, b = (np.asarray(o, np.float32)[0] for o in outputs)
        boxes, scores_all = (a, b) if a.shape[-1] == 4 and b.shape[-1] != 4 else (b, a)
        first = 1 if labels and labels[0] == "background" else 0
        cls = scores_all[:, first:].argmax(1) + first
        scores = scores_all[np.arange(len(cls)), cls]
        if boxes.size and float(np.abs(boxes).max()) <= 1.5:
            boxes = boxes * scale
        return Raw(boxes, scores, cls.astype(np.int64))
    raise ValueError(f"outputs {[list(s) for s in shapes]} are no SSD layout this reads")


def _drop_background(raw: Raw, labels: tuple[str, ...]) -> Raw:
    if not labels or labels[0] != "background":
        return raw
    keep = raw.classes != 0
    return Raw(raw.boxes[keep], raw.scores[keep], raw.classes[keep], raw.nms_done)
