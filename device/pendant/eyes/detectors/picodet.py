"""PicoDet (PaddleDetection) without its NMS: per stride, class scores [1, N, nc] and GFL box
distributions [1, N, 4 * bins], all the score outputs first. Labels: the "character" metadata
of RapidAI's exports, one a line.

Input: the frame resized, channels reversed, ImageNet mean/std, NCHW.
"""

from __future__ import annotations

import numpy as np

from pendant.eyes.detectors.boxes import Geometry, InputSpec, Raw, stretch

STRIDES = (8, 16, 32, 64)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def prepare(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """The model's input (the frame resized to `spec`, channels reversed, ImageNet-normalised, NCHW
    float) and the geometry back to the frame."""
    image, geometry = stretch(frame[:, :, ::-1], spec.width, spec.height)
    x = ((image.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x), geometry


def names(meta: dict[str, str]) -> tuple[str, ...] | None:
    """The labels in a RapidAI export's "character" metadata, one a line; None when it has none."""
    labels = tuple(meta.get("character", "").splitlines())
    return labels or None


def matches(shapes: list[tuple[int, ...]]) -> bool:
    """Pairs of rank-3 outputs, scores first, as many boxes as scores at each level."""
    if len(shapes) < 2 or len(shapes) % 2 or any(len(s) != 3 for s in shapes):
        return False
    half = len(shapes) // 2
    return all(
        s[1] == d[1] and d[2] % 4 == 0 for s, d in zip(shapes[:half], shapes[half:], strict=True)
    )


def decode(outputs: list[np.ndarray], spec: InputSpec) -> Raw:
    """Every level's class scores and GFL box distributions as Raw boxes in the input's pixels, each
    with its best class (no NMS)."""
    levels = len(outputs) // 2
    boxes, scores = [], []
    for stride, cls_scores, dist in zip(STRIDES, outputs[:levels], outputs[levels:], strict=False):
        cls_scores, dist = cls_scores[0], dist[0]
        ny, nx = -(-spec.height // stride), -(-spec.width // stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centre = (np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5) * stride
        # GFL: each side's distance is the expectation over reg_max + 1 bins.
        bins = dist.shape[-1] // 4
        logits = dist.reshape(-1, 4, bins)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        d = (p * np.arange(bins)).sum(-1) * stride
        boxes.append(np.hstack([centre - d[:, :2], centre + d[:, 2:]]))
        scores.append(cls_scores)
    all_scores = np.concatenate(scores)
    cls = all_scores.argmax(1)
    return Raw(
        np.concatenate(boxes).astype(np.float32),
        all_scores[np.arange(len(cls)), cls],
        cls.astype(np.int64),
    )
