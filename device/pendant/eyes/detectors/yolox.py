"""YOLOX (Megvii) exported without its decode: one output [1, N, 5 + nc] whose N rows are the
cells of the stride 8, 16 and 32 grids in turn, each row dx, dy, log w, log h (in cells of its
stride), then objectness and class scores already through a sigmoid.

That shape is also YOLOv5's [1, N, 5 + nc]; the row count tells them apart: YOLOv5 has three
anchors a cell, YOLOX one, so N is exactly the cells of the three grids.

Input: the frame scaled to fit onto grey at the top left (not centred), channels reversed,
0..255 as float, NCHW: the preprocessing of YOLOX's own demo since its 0.1.1 release.
"""

from __future__ import annotations

import numpy as np

from pendant.eyes.detectors.boxes import Geometry, InputSpec, Raw, letterbox

STRIDES = (8, 16, 32)


def cells(width: int, height: int) -> int:
    """The rows a YOLOX output has for this input size."""
    return sum(-(-width // s) * -(-height // s) for s in STRIDES)


def matches(shapes: list[tuple[int, ...]], spec: InputSpec) -> bool:
    """One [1, N, C > 5] output with N the cells of the stride 8/16/32 grids of the input."""
    if len(shapes) != 1 or len(shapes[0]) != 3:
        return False
    _, rows, cols = shapes[0]
    return cols > 5 and rows == cells(spec.width, spec.height)


def prepare(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """The model's input (the frame letterboxed onto grey at the top left, channels reversed, 0-255
    float, NCHW) and the geometry back to the frame."""
    image, geometry = letterbox(frame, spec.width, spec.height, centre=False)
    x = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), geometry


def decode(outputs: list[np.ndarray], spec: InputSpec) -> Raw:
    """Grid offsets and log sizes to boxes in the input's pixels; score = objectness x class."""
    out = np.asarray(outputs[0], dtype=np.float32).reshape(-1, outputs[0].shape[-1])
    origin, stride = _grid(spec)
    if len(out) != len(origin):
        raise ValueError(f"{len(out)} rows, not the {len(origin)} cells of a YOLOX grid")
    centre = (out[:, :2] + origin) * stride
    half = np.exp(np.clip(out[:, 2:4], -20, 20)) * stride / 2
    scores_all = out[:, 5:] * out[:, 4:5]
    cls = scores_all.argmax(1)
    return Raw(
        np.hstack([centre - half, centre + half]),
        scores_all[np.arange(len(cls)), cls],
        cls.astype(np.int64),
    )


def _grid(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cell (x, y) and stride, in the order the model lists them."""
    origins, strides = [], []
    for s in STRIDES:
        ny, nx = -(-spec.height // s), -(-spec.width // s)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        origins.append(np.stack([xx.ravel(), yy.ravel()], axis=1))
        strides.append(np.full((nx * ny, 1), s))
    return np.concatenate(origins).astype(np.float32), np.concatenate(strides).astype(np.float32)
