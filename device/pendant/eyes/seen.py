"""What a look found, as events: a Sight (plain values, made where the models ran) becomes the
Scene and the intent that carries it to Hermes.

Kept apart from the models (`pendant.eyes.pipeline`) so that the eyes' reader never imports
pydantic (14 MB of its peak): it sends a Sight, and the eyes service, which has pydantic
anyway, makes the events here, with its own device id, trigger and session, so a reader
cannot speak for another device or request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pendant.core.events import READ_TEXT, SEEN_OBJECTS, Intent, Label, Scene, Slot

READ_TRIGGERS = frozenset({"capture", "read_this", "button"})
MAX_SLOTS = 16


@dataclass
class Seen:
    """What one look found: the scene, and the intents it makes (the text read, or the objects
    seen)."""

    scene: Scene
    intents: list[Intent] = field(default_factory=list)


def seen(device_id: str, trigger: str, sight: Any, session_id: str | None = None) -> Seen:
    """The events of `sight` (a `pendant.eyes.pipeline.Sight`); pydantic's ValidationError (a
    ValueError) when a value is not one an event can carry."""
    labels = [Label(name=name, score=score) for name, score in sight.labels]
    extra = {"session_id": session_id} if session_id else {}
    scene = Scene(
        device_id=device_id,
        trigger=trigger,
        face_count=sight.face_count,
        text=sight.text or None,
        labels=labels,
        **extra,
    )
    found = Seen(scene)
    if trigger in READ_TRIGGERS:
        found.intents.append(_read_text(device_id, sight.text, sight.confidence, scene.session_id))
    elif labels:
        found.intents.append(_seen_objects(device_id, labels, scene.session_id))
    return found


def _read_text(device_id: str, text: str, confidence: float, session_id: str) -> Intent:
    flat = " ".join(text.split())
    return Intent(
        device_id=device_id,
        name=READ_TEXT,
        text=flat,
        confidence=min(1.0, max(0.0, confidence)),
        slots=[Slot(name="text", value=flat, raw_value=flat[:100], entity="ocr")],
        session_id=session_id,
    )


def _seen_objects(device_id: str, labels: list[Label], session_id: str) -> Intent:
    names = [label.name for label in labels[:MAX_SLOTS]]
    return Intent(
        device_id=device_id,
        name=SEEN_OBJECTS,
        text=", ".join(names)[:500],
        confidence=max(label.score for label in labels),
        slots=[
            Slot(name=f"object_{i}", value=name, raw_value=name, entity="label")
            for i, name in enumerate(names, start=1)
        ],
        session_id=session_id,
    )
