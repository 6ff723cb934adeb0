"""Object detectors, Frigate-style: one base class, one small file per backend, one registry.

`eyes.detector.type` picks the backend: "cpu" (onnxruntime, any .onnx file;
one small output parser per format: yolo.py, yolox.py, ssd.py, picodet.py), "hailo" (a Hailo-8/8L
through hailo_platform), "coral" (an Edge TPU through ai-edge-litert's delegate), "imx500" (the
Raspberry Pi AI Camera, whose sensor runs the network), or "auto": the first accelerator
present, else the CPU. `DETECTORS` (its table is in pendant.core.backends, where the config
finds the choices) names each backend's `"module:Class"`, imported only when asked for. An
accelerator that is configured but missing, or will not load, falls back to the CPU with one
warning: the pendant still answers, only slower.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from pendant.core.backends import DETECTORS
from pendant.core.errors import BackendUnavailable, PendantError

if TYPE_CHECKING:
    from pendant.core.config import Config

log = logging.getLogger(__name__)

# COCO's 80 classes, in the order every COCO-trained YOLO/SSD reports them.
COCO: tuple[str, ...] = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic_light",
    "fire_hydrant",
    "stop_sign",
    "parking_meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports_ball",
    "kite",
    "baseball_bat",
    "baseball_glove",
    "skateboard",
    "surfboard",
    "tennis_racket",
    "bottle",
    "wine_glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot_dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted_plant",
    "bed",
    "dining_table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell_phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy_bear",
    "hair_drier",
    "toothbrush",
)


@dataclass(frozen=True, slots=True)
class Detection:
    """One thing seen: its label, the detector's score, and where it is when the backend knows."""

    label: str
    score: float
    box: tuple[float, float, float, float] | None = None
    """x1, y1, x2, y2 in the frame's pixels, where the backend knows it; never leaves the eyes."""


class Detector(ABC):
    """One backend. Construct it to load the model (fail here, with the reason), then detect.

    A backend says whether its hardware is on this machine (`present`) without importing its
    runtime, so `auto` can look cheaply; its constructor raises BackendUnavailable when the
    runtime or the hardware cannot be used after all.
    """

    type: ClassVar[str]
    device_paths: ClassVar[tuple[str, ...]] = ()
    """Any of these existing means the accelerator is here (tests point them elsewhere)."""

    @classmethod
    def present(cls) -> bool:
        """Whether its accelerator is on this machine: a device node, its runtime unimported."""
        return any(Path(p).exists() for p in cls.device_paths)

    def __init__(self, config: Config) -> None:
        self.min_score = config.eyes.detector.min_score

    @abstractmethod
    def detect(self, frame: np.ndarray) -> list[Detection]:
        """What is in an RGB frame (faces already masked), best first. Blocking."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Releases the accelerator, where the backend holds one; no `detect` after it."""
        pass


def read_labels(path: str | None) -> tuple[str, ...]:
    """The class names in the file at `path`, one a line (blank lines skipped); COCO's without a
    path. BackendUnavailable when the file cannot be read."""
    if not path:
        return COCO
    try:
        return tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    except OSError as exc:
        raise BackendUnavailable(f"eyes.detector.labels: cannot read {path}: {exc}") from None


def best_labels(detections: list[Detection], limit: int = 20) -> list[Detection]:
    """One entry per label (its best score), best first."""
    best: dict[str, float] = {}
    for d in detections:
        best[d.label] = max(best.get(d.label, 0.0), d.score)
    ranked = sorted(best.items(), key=lambda kv: -kv[1])[:limit]
    return [Detection(label, score) for label, score in ranked]


def create_detector(config: Config) -> Detector:
    """The configured backend, or the CPU one (with one warning) when it cannot be had."""
    name = DETECTORS.choose(config.eyes.detector.type)
    if name != DETECTORS.fallback:
        try:
            backend = DETECTORS.load(name)
            if not backend.present():
                where = ", ".join(backend.device_paths)
                raise BackendUnavailable(f"no {name} found ({where})")
            return backend(config)
        except (PendantError, ImportError, OSError) as exc:
            log.warning("eyes.detector.type %r: %s: using the CPU", name, exc)
    return DETECTORS.load(DETECTORS.fallback)(config)
