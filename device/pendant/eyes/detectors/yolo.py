"""YOLO outputs: one tensor, the anchor-free heads already decoded into boxes.

- YOLOv8/11 (Ultralytics): [1, 4 + nc, N], rows cx, cy, w, h then one score per class.
- YOLOv5/v7: [1, N, 5 + nc], columns cx, cy, w, h, objectness, then class probabilities.
- YOLOv10 / end-to-end exports: [1, K, 6], x1, y1, x2, y2, score, class, NMS already done.

Input: the frame letterboxed onto grey, RGB, scaled to [0, 1]. Labels: Ultralytics writes the
class names into the ONNX metadata ("names": "{0: 'person', ...}").
"""

from __future__ import annotations

import ast

import numpy as np

from pendant.eyes.detectors import COCO
from pendant.eyes.detectors.boxes import (
    Geometry,
    InputSpec,
    Raw,
    letterbox,
    to_tensor,
    xywh_to_xyxy,
)

END2END_MAX = 1000
"""An [1, K, 6] output with at most this many rows is end-to-end (x1 y1 x2 y2 score class)."""


def prepare(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """The model's input (the frame letterboxed onto grey, centred, RGB) and the geometry back to
    the frame."""
    image, geometry = letterbox(frame, spec.width, spec.height)
    return to_tensor(image, spec), geometry


def names(meta: dict[str, str]) -> tuple[str, ...] | None:
    """Class names from an Ultralytics export's metadata, in class order."""
    raw = meta.get("names")
    if not raw:
        return None
    try:
        parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return None
    if isinstance(parsed, dict):
        return tuple(str(parsed[k]) for k in sorted(parsed))
    if isinstance(parsed, list | tuple):
        return tuple(str(v) for v in parsed)
    return None


def decode(outputs: list[np.ndarray], spec: InputSpec, classes: int | None = None) -> Raw:
    """The one output as Raw boxes; `classes` (from the labels) settles ambiguous layouts."""
    out = np.asarray(outputs[0], dtype=np.float32)
    if out.ndim == 3:
        out = out[0]
    if out.ndim != 2:
        raise ValueError(f"a YOLO output is [1, C, N] or [1, N, C], not {list(outputs[0].shape)}")
    kind, out = _layout(out, classes if classes is not None else len(COCO), classes is None)
    n, c = out.shape
    if kind == "end2end":
        boxes = _pixels(out[:, :4], spec)
        return Raw(boxes, out[:, 4].copy(), out[:, 5].astype(np.int64), nms_done=True)
    if c < 5:
        raise ValueError(f"a YOLO output has at least 5 columns, not {c}")
    # v5: objectness times each class's probability.
    scores_all = (
        out[:, 4:] if kind == "v8" else (out[:, 5:] * out[:, 4:5] if c > 5 else out[:, 4:5])
    )
    cls = scores_all.argmax(1)
    scores = scores_all[np.arange(n), cls]
    return Raw(_pixels(xywh_to_xyxy(out[:, :4]), spec), scores, cls.astype(np.int64))


def _layout(out: np.ndarray, nc: int, guessed: bool) -> tuple[str, np.ndarray]:
    """("v8" | "v5" | "end2end", the output as one row per candidate).

    The class count (the labels', else COCO's 80) tells the layouts apart; a model with another
    count and no names falls back to the shape: more columns than rows is v8's [4 + nc, N].
    """
    rows, cols = out.shape
    if rows == 4 + nc and cols != 4 + nc:
        return "v8", out.T
    if cols == 4 + nc:
        return "v8", out
    if cols == 5 + nc:
        return "v5", out
    if rows == 5 + nc:
        return "v5", out.T
    if cols == 6 and rows <= END2END_MAX:
        return "end2end", out
    if guessed and rows < cols:
        return "v8", out.T
    return "v5", out


def _pixels(boxes: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Some exports give boxes normalised to [0, 1]: scale those to the input's pixels."""
    if boxes.size and float(np.abs(boxes).max()) <= 1.5:
        return boxes * np.array([spec.width, spec.height] * 2, dtype=np.float32)
    return boxes
