"""One frame in, one Scene out: faces masked first, then OCR and the detector.

The frame is masked in place and dropped by the caller as soon as `look` returns; what
leaves is text, labels and a face count, never pixels or a face's position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from pendant.core.events import READ_TEXT, SEEN_OBJECTS, Intent, Label, Scene, Slot
from pendant.core.model_cache import model_path
from pendant.eyes.detectors import Detector, best_labels, create_detector
from pendant.eyes.faces import FaceGuard
from pendant.eyes.ocr import OCR_MODEL, TextReader, join_lines

if TYPE_CHECKING:
    from pendant.core.config import Config

Trigger = Literal["capture", "read_this", "what_is_this", "button"]
READ_TRIGGERS = frozenset({"capture", "read_this", "button"})
MAX_LABELS = 20
MAX_SLOTS = 16


@dataclass
class Seen:
    """What one look found: the scene, and the intents it makes (the text read, or the objects
    seen)."""

    scene: Scene
    intents: list[Intent] = field(default_factory=list)


class Eyes:
    """The models, loaded once: `Eyes(config).look(frame, "read_this")` -> Seen."""

    def __init__(self, config: Config, detector: Detector | None = None) -> None:
        self.device_id = config.device_id
        eyes = config.eyes
        # Every model is checked here, so a missing one fails before READY, in one line.
        self.guard = FaceGuard(model_path(config, "retinaface"), eyes.face_threshold)
        self.reader = TextReader(model_path(config, OCR_MODEL), eyes.ocr_min_confidence)
        self.detector = detector if detector is not None else create_detector(config)

    def warm_up(self, step: Callable[[str], None] = lambda _: None) -> None:
        """Each model once over a blank frame: the first inference allocates, later ones reuse."""
        frame = np.full((480, 640, 3), 255, dtype=np.uint8)
        step("warming up the face guard")
        self.guard.mask(frame)
        step("warming up the text reader")
        self.reader.read(frame)
        step("warming up the detector")
        self.detector.detect(frame)

    def look(self, frame: np.ndarray, trigger: Trigger, session_id: str | None = None) -> Seen:
        """Read one RGB frame. The frame is masked in place: do not use it afterwards."""
        faces = self.guard.mask(frame)
        lines = self.reader.read(frame)
        found = (
            best_labels(self.detector.detect(frame), MAX_LABELS)
            if (trigger == "what_is_this")
            else []
        )
        text = join_lines(lines)
        labels = [Label(name=d.label[:100], score=round(d.score, 3)) for d in found]
        extra = {"session_id": session_id} if session_id else {}
        scene = Scene(
            device_id=self.device_id,
            trigger=trigger,
            face_count=min(faces, 100),
            text=text or None,
            labels=labels,
            **extra,
        )
        seen = Seen(scene)
        confidence = float(np.mean([line.confidence for line in lines])) if lines else 0.0
        if trigger in READ_TRIGGERS:
            seen.intents.append(self._read_text(text, confidence, scene.session_id))
        elif labels:
            seen.intents.append(self._seen_objects(labels, scene.session_id))
        return seen

    def _read_text(self, text: str, confidence: float, session_id: str) -> Intent:
        flat = " ".join(text.split())
        return Intent(
            device_id=self.device_id,
            name=READ_TEXT,
            text=flat,
            confidence=min(1.0, max(0.0, confidence)),
            slots=[Slot(name="text", value=flat, raw_value=flat[:100], entity="ocr")],
            session_id=session_id,
        )

    def _seen_objects(self, labels: list[Label], session_id: str) -> Intent:
        names = [label.name for label in labels[:MAX_SLOTS]]
        return Intent(
            device_id=self.device_id,
            name=SEEN_OBJECTS,
            text=", ".join(names)[:500],
            confidence=max(label.score for label in labels),
            slots=[
                Slot(name=f"object_{i}", value=name, raw_value=name, entity="label")
                for i, name in enumerate(names, start=1)
            ],
            session_id=session_id,
        )

    def close(self) -> None:
        """Releases the detector (its accelerator); the eyes do not look after it."""
        self.detector.close()
