"""One frame in, one Sight out (and from it a Scene): faces masked first, then OCR and the
detector.

The frame is masked in place and dropped by the caller as soon as `see` returns; what
leaves is text, labels and a face count, never pixels or a face's position. This module
imports no pydantic: the events are made from the Sight by `pendant.eyes.seen`.

The models either stay loaded (`pendant look`, many frames) or, in the eyes' reader
(`keep_models=False`), each is loaded when a frame needs it and released, its memory handed
back, before the next one loads: a capture's peak is then the libraries and the largest model,
not all five models at once (README, "Memory").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import numpy as np

from pendant.core import heap
from pendant.core.model_cache import model_path
from pendant.eyes import OCR_MODEL
from pendant.eyes.detectors import Detection, Detector, best_labels, create_detector
from pendant.eyes.faces import FaceGuard
from pendant.eyes.ocr import TextReader, join_lines
from pendant.eyes.sight import MAX_FACES, MAX_LABEL, MAX_LABELS, MAX_TEXT, Sight

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.eyes.seen import Seen

Trigger = Literal["capture", "read_this", "what_is_this", "button"]


class Eyes:
    """The models: `Eyes(config).look(frame, "read_this")` -> Seen.

    `keep_models` (the default) loads every model now and holds it; False checks that each is
    there now and loads it only while a frame needs it (one model in memory at a time).
    """

    def __init__(
        self, config: Config, detector: Detector | None = None, keep_models: bool = True
    ) -> None:
        self.config = config
        self.device_id = config.device_id
        self.keep_models = keep_models
        eyes = config.eyes
        # Every model is checked here, so a missing one fails before READY, in one line.
        self.face_path = model_path(config, "retinaface")
        self.reader = TextReader(
            model_path(config, OCR_MODEL), eyes.ocr_min_confidence, keep_models=keep_models
        )
        self.guard: FaceGuard | None = self._load_guard() if keep_models else None
        self.detector: Detector | None = detector
        if detector is None and keep_models:
            self.detector = create_detector(config)
        self.detector_name = type(self.detector).__name__ if self.detector is not None else ""
        """The detector backend's class, once one was loaded ("" before)."""

    def _load_guard(self) -> FaceGuard:
        return FaceGuard(self.face_path, self.config.eyes.face_threshold)

    def prepare(self) -> None:
        """Loads the face guard, the first model a frame meets, ahead of the frame (the reader
        does while the camera takes it); the next `look` uses it and, unless models are
        kept, releases it."""
        if self.guard is None:
            self.guard = self._load_guard()

    def _take_guard(self) -> FaceGuard:
        guard = self.guard if self.guard is not None else self._load_guard()
        if not self.keep_models:
            self.guard = None
        return guard

    def _mask(self, frame: np.ndarray) -> int:
        guard = self._take_guard()
        faces = guard.mask(frame)
        del guard
        self._released()
        return faces

    def _detect(self, frame: np.ndarray) -> list[Detection]:
        if self.detector is not None:
            return self.detector.detect(frame)
        detector = create_detector(self.config)
        self.detector_name = type(detector).__name__
        try:
            return detector.detect(frame)
        finally:
            detector.close()
            del detector
            self._released()

    def _released(self) -> None:
        """What a model let go of goes back to the system, unless models are kept."""
        if not self.keep_models:
            heap.trim()

    def warm_up(self, step: Callable[[str], None] = lambda _: None) -> None:
        """Each model once over a blank frame: the first inference allocates, later ones reuse.
        Not keeping models, each is loaded, run and released in turn: one that will not load
        fails here."""
        frame = np.full((480, 640, 3), 255, dtype=np.uint8)
        step("warming up the face guard")
        self._mask(frame)
        step("warming up the text reader")
        self.reader.check()
        self.reader.read(frame)
        step("warming up the detector")
        self._detect(frame)

    def see(self, frame: np.ndarray, trigger: Trigger) -> Sight:
        """Read one RGB frame. The frame is masked in place: do not use it afterwards."""
        faces = self._mask(frame)
        lines = self.reader.read(frame)
        found = best_labels(self._detect(frame), MAX_LABELS) if trigger == "what_is_this" else []
        return Sight(
            face_count=min(faces, MAX_FACES),
            text=join_lines(lines, MAX_TEXT),
            confidence=float(np.mean([line.confidence for line in lines])) if lines else 0.0,
            labels=[(d.label[:MAX_LABEL], round(d.score, 3)) for d in found],
        )

    def look(self, frame: np.ndarray, trigger: Trigger, session_id: str | None = None) -> Seen:
        """Read one RGB frame into events (`see`, then `pendant.eyes.seen`). The frame is masked
        in place: do not use it afterwards."""
        from pendant.eyes.seen import seen

        return seen(self.device_id, trigger, self.see(frame, trigger), session_id)

    def close(self) -> None:
        """Releases the models and the detector (its accelerator); the eyes do not look after
        it."""
        self.guard = None
        if self.detector is not None:
            self.detector.close()
