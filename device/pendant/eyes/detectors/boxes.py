"""What every CPU output format shares: the input tensor, box geometry, NMS, the raw result.

A parser turns a model's outputs into `Raw` boxes in the model input's pixels; `Geometry`
maps them back onto the frame, undoing the letterbox (or the plain resize) that made the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pendant.eyes.faces import nms

LETTERBOX_FILL = 114
MAX_CANDIDATES = 2000


@dataclass(frozen=True, slots=True)
class Geometry:
    """model = frame * scale + pad, per axis."""

    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_frame(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """Boxes (x1, y1, x2, y2 rows) in the model input's pixels, mapped back onto a frame of
        width x height and clipped to it; a new array."""
        out = np.asarray(boxes, dtype=np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def letterbox(
    frame: np.ndarray, width: int, height: int, centre: bool = True
) -> tuple[np.ndarray, Geometry]:
    """The frame scaled to fit (width, height) without distortion, on grey: centred (YOLO's)
    or at the top left (YOLOX's)."""
    import cv2

    h, w = frame.shape[:2]
    scale = min(width / w, height / h)
    new_w, new_h = round(w * scale), round(h * scale)
    pad_x, pad_y = ((width - new_w) // 2, (height - new_h) // 2) if centre else (0, 0)
    out = np.full((height, width, 3), LETTERBOX_FILL, dtype=np.uint8)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
        frame, (new_w, new_h), interpolation=interp
    )
    return out, Geometry(new_w / w, new_h / h, float(pad_x), float(pad_y))


def stretch(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, Geometry]:
    """The frame resized to (width, height), as SSD and PicoDet were trained."""
    import cv2

    h, w = frame.shape[:2]
    out = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return out, Geometry(width / w, height / h)


def to_tensor(image: np.ndarray, spec: InputSpec, scale: float = 1 / 255.0) -> np.ndarray:
    """An HWC uint8 RGB image as the model's input: NCHW or NHWC, uint8 or float scaled."""
    x = image[None]
    if spec.dtype != "uint8":
        x = x.astype(np.float32) * scale
    return x.transpose(0, 3, 1, 2) if spec.nchw else x


@dataclass(frozen=True, slots=True)
class InputSpec:
    """The model's input: its size in pixels, its layout (NCHW, else NHWC) and dtype ("uint8", else
    float)."""

    width: int
    height: int
    nchw: bool = True
    dtype: str = "float32"


@dataclass(slots=True)
class Raw:
    """Candidate boxes (x1, y1, x2, y2) in the model input's pixels, with score and class."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    nms_done: bool = False
    """The model ran its own NMS (TF's four outputs, DetectionOutput, YOLOv10)."""

    @classmethod
    def empty(cls) -> Raw:
        """No boxes at all."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """Boxes as (centre x, centre y, width, height) rows, as (x1, y1, x2, y2) rows."""
    half = b[:, 2:4] / 2
    return np.hstack([b[:, :2] - half, b[:, :2] + half])


def select(raw: Raw, min_score: float, iou: float) -> list[int]:
    """Indices of the boxes kept: above `min_score`, then NMS within each class."""
    hit = np.flatnonzero(raw.scores >= min_score)
    if hit.size == 0:
        return []
    hit = hit[np.argsort(-raw.scores[hit], kind="stable")][:MAX_CANDIDATES]
    if raw.nms_done:
        return hit.tolist()
    boxes = raw.boxes[hit].astype(np.float32)
    # One NMS pass for every class: shift each class's boxes apart so they never overlap.
    offset = raw.classes[hit].astype(np.float32)[:, None] * (float(np.abs(boxes).max()) + 1.0)
    keep = nms(boxes + offset, raw.scores[hit], iou)
    return hit[keep].tolist()
