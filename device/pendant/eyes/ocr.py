"""Text in a frame: PP-OCRv6 small detection and recognition, and PaddleOCR's v2.0 direction
classifier, on onnxruntime.

The three models RapidOCR ships in its wheel, run here directly: the pre- and post-processing
are PaddleOCR's (DB boxes, CTC decoding), in numpy and OpenCV, with nothing downloaded and no
file written. `tools/measure_ocr.py` measures them (README, "Reading text").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pendant.core import heap
from pendant.core.errors import ModelError
from pendant.eyes import geometry, model_threads, prepared_models

# The three models, in the order a frame goes through them.
MODELS = ("det", "cls", "rec")
DET_THRESHOLD = 0.3
DET_BOX_THRESHOLD = 0.5
DET_UNCLIP_RATIO = 1.6
DET_MAX_BOXES = 200
# The detector sees the frame scaled so that its short side is this long (multiples of 32).
# 384 of the frame's 480 read as well on tools/measure_ocr.py's tune part as 480 did, in a fifth
# less CPU time (the v6 detector is twice the v4's size); upscaling to 736 read no more of the
# test labels with PP-OCRv4 and cost 160 MB more at peak.
DET_SHORT_SIDE = 384
DET_LONG_SIDE_MAX = 1280
CLS_SHAPE = (48, 192)
CLS_FLIP_THRESHOLD = 0.9
CLS_BATCH = 6
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
# The link's gate drops a run of 48+ base64-ish characters as a blob; OCR of a barcode or a
# serial-number strip can produce one. Cut such runs out rather than lose the whole event.
BLOB = re.compile(r"[A-Za-z0-9+/=_-]{48,}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of text read: the text (cleaned), the recogniser's confidence, and where it starts
    in the frame (pixels from the top and from the left)."""

    text: str
    confidence: float
    top: float
    left: float


class _Model:
    """One loaded model, as `TextReader._model` lends it: `run(x)` feeds its one input."""

    def __init__(self, session: Any) -> None:
        self.session: Any = session
        self.input = session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: x})[0]  # type: ignore[no-any-return]


def _normalise(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x 3 (BGR) -> float32 N x 3 x H x W in [-1, 1]."""
    x = images.astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The points' minimum-area rectangle, corners clockwise from top-left, and short side."""
    corners, short = geometry.min_area_rect(points.reshape(-1, 2))
    points_sorted = sorted(corners.tolist(), key=lambda p: p[0])
    left = sorted(points_sorted[:2], key=lambda p: p[1])
    right = sorted(points_sorted[2:], key=lambda p: p[1])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, short


def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
    h, w = prob.shape
    xmin, xmax = int(np.clip(box[:, 0].min(), 0, w - 1)), int(np.clip(box[:, 0].max(), 0, w - 1))
    ymin, ymax = int(np.clip(box[:, 1].min(), 0, h - 1)), int(np.clip(box[:, 1].max(), 0, h - 1))
    shifted = (box - [xmin, ymin]).astype(np.int32).astype(np.float32)
    mask = geometry.inside(shifted, ymax - ymin + 1, xmax - xmin + 1).astype(bool)
    region = prob[ymin : ymax + 1, xmin : xmax + 1]
    return float(region[mask].mean()) if mask.any() else 0.0


def _unclip(box: np.ndarray, ratio: float) -> np.ndarray | None:
    import pyclipper

    x, y = box[:, 0], box[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    length = float(np.sum(np.linalg.norm(box - np.roll(box, 1, axis=0), axis=1)))
    if length == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(area * ratio / length)
    if len(grown) != 1:
        return None
    return np.array(grown[0], dtype=np.float32).reshape(-1, 1, 2)


def _crop(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The quadrilateral `box` of `image`, straightened; tall crops are turned to lie flat."""
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    crop = geometry.warp(image, geometry.perspective(box, target), width, height)
    if height / width >= 1.5:
        crop = np.rot90(crop)
    return crop


def _resize_padded(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scaled to `height`, at most `width` wide, padded on the right with zeros."""
    h, w = crop.shape[:2]
    new_w = min(width, max(1, int(np.ceil(height * w / h))))
    out = np.zeros((height, width, 3), dtype=np.uint8)
    out[:, :new_w] = geometry.resize(np.ascontiguousarray(crop), new_w, height)
    return out


def clean(text: str) -> str:
    """Text fit for an event: no control characters, no blob-like runs, squeezed spaces."""
    text = BLOB.sub(" ", CONTROL.sub(" ", text))
    return re.sub(r"\s+", " ", text).strip()


class TextReader:
    """`TextReader(model_dir).read(frame)` -> the lines of text in an RGB frame, in order."""

    def __init__(
        self, model_dir: Path, min_confidence: float = 0.7, keep_models: bool = True
    ) -> None:
        """`keep_models`: load the three models now and hold them (quickest for many frames);
        False: load each when a frame needs it and release it before the next is loaded (the
        eyes' reader: its peak memory is then the largest model's, not the three's)."""
        self.model_dir = model_dir
        self.min_confidence = min_confidence
        self.keep_models = keep_models
        self.characters: list[str] = []
        self._held: dict[str, Any] = {}
        if keep_models:
            for name in MODELS:
                self._held[name] = self._load(name)

    def _load(self, name: str) -> Any:
        from pendant.core.onnx_session import session

        path = self.model_dir / f"{name}.onnx"
        loaded = session(path, str(path), model_threads(), prepared=prepared_models())
        if name == "rec":
            self.characters = _characters(loaded, path)
        return loaded

    @contextmanager
    def _model(self, name: str) -> Iterator[_Model]:
        """The model `name`, held or loaded now; one loaded now is released (and its memory
        given back) when the block ends, so the next one loads into the room it leaves."""
        model = _Model(self._held[name] if name in self._held else self._load(name))
        try:
            yield model
        finally:
            if name not in self._held:
                model.session = None
                heap.trim()

    def check(self) -> None:
        """Loads each model in turn (and releases it unless held): ModelError now, not at the
        first frame, when one will not load."""
        for name in MODELS:
            with self._model(name):
                pass

    def read(self, frame: np.ndarray) -> list[Line]:
        """The lines of text in an RGB frame, in reading order, cleaned (`clean`); a line under
        `min_confidence`, or empty once cleaned, is left out. Blocking."""
        image = np.ascontiguousarray(frame[:, :, ::-1])  # the models were trained on BGR
        with self._model("det") as det:
            boxes = self._detect(det, image)
        if not boxes:
            return []
        crops = [_crop(image, box) for box in boxes]
        crops = self._upright(crops)
        lines = []
        for box, (text, confidence) in zip(boxes, self._recognise(crops), strict=True):
            text = clean(text)
            if text and confidence >= self.min_confidence:
                lines.append(Line(text, confidence, float(box[:, 1].min()), float(box[0, 0])))
        return lines

    def _detect(self, det: _Model, image: np.ndarray) -> list[np.ndarray]:
        h, w = image.shape[:2]
        scale = min(DET_SHORT_SIDE / min(h, w), DET_LONG_SIDE_MAX / max(h, w))
        rh, rw = (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))
        x = _normalise(geometry.resize(image, rw, rh)[None])
        prob = det.run(x)[0, 0]
        del x
        bitmap = geometry.dilate2((prob > DET_THRESHOLD).astype(np.uint8))
        boxes = []
        for region in geometry.regions(bitmap)[:DET_MAX_BOXES]:
            box, short = _mini_box(region)
            if short < 3 or _box_score(prob, box) < DET_BOX_THRESHOLD:
                continue
            grown = _unclip(box, DET_UNCLIP_RATIO)
            if grown is None:
                continue
            box, short = _mini_box(grown)
            if short < 5:
                continue
            box[:, 0] = np.clip(box[:, 0] * w / rw, 0, w - 1)
            box[:, 1] = np.clip(box[:, 1] * h / rh, 0, h - 1)
            boxes.append(box)
        # Reading order: top to bottom, then left to right within a line's height.
        boxes.sort(key=lambda b: (b[0, 1], b[0, 0]))
        for i in range(len(boxes) - 1):
            for j in range(i, -1, -1):
                a, b = boxes[j], boxes[j + 1]
                if abs(b[0, 1] - a[0, 1]) < 10 and b[0, 0] < a[0, 0]:
                    boxes[j], boxes[j + 1] = b, a
                else:
                    break
        return boxes

    def _upright(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Crops the direction classifier finds upside down, turned the right way up."""
        out = list(crops)
        with self._model("cls") as cls:
            for start in range(0, len(crops), CLS_BATCH):
                batch = crops[start : start + CLS_BATCH]
                probs = cls.run(
                    _normalise(np.stack([_resize_padded(c, *CLS_SHAPE) for c in batch]))
                )
                for k, p in enumerate(probs):
                    if int(np.argmax(p)) == 1 and float(p[1]) > CLS_FLIP_THRESHOLD:
                        out[start + k] = np.ascontiguousarray(batch[k][::-1, ::-1])
        return out

    def _recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        # One line at a time: the output holds a score for each of the 18,710 classes at every
        # step, so a batch of six long lines took 140 MB more at peak, for no speed gained on
        # one thread (what the eyes give onnxruntime on a 2-core machine, where it was measured).
        results = []
        with self._model("rec") as rec:
            for crop in crops:
                width = max(REC_MIN_WIDTH, int(np.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0])))
                x = _normalise(_resize_padded(crop, REC_HEIGHT, width)[None])
                results.append(self._decode(rec.run(x)[0]))
        return results

    def _decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: best class per step, repeats merged, blanks dropped."""
        best = probs.argmax(axis=1)
        keep = best != 0
        keep[1:] &= best[1:] != best[:-1]
        if not keep.any():
            return "", 0.0
        text = "".join(self.characters[k] for k in best[keep] if k < len(self.characters))
        return text, float(probs.max(axis=1)[keep].mean())


def _characters(rec: Any, path: Path) -> list[str]:
    """The recogniser's classes: its character list from its metadata, checked against its
    output; ModelError (one line) when they do not match."""
    keys = rec.get_modelmeta().custom_metadata_map.get("character")
    if not keys:
        raise ModelError(f"{path}: has no character list")
    # CTC: index 0 is the blank; the model's last class is a space.
    characters = ["", *keys.splitlines(), " "]
    classes = rec.get_outputs()[0].shape[-1]
    if isinstance(classes, int) and classes != len(characters):
        raise ModelError(
            f"{path}: scores {classes} classes but its character list "
            f"makes {len(characters)}: fetch the model again (`pendant models fetch`)"
        )
    return characters


def join_lines(lines: list[Line], max_chars: int = 500) -> str:
    """The lines as one text, newline-separated, cut at a line boundary to `max_chars`."""
    out = ""
    for line in lines:
        candidate = f"{out}\n{line.text}" if out else line.text
        if len(candidate) > max_chars:
            if not out:
                out = line.text[:max_chars]
            break
        out = candidate
    return out
