"""A Sight: what one look at a frame found, in plain values, the reader's answer to the eyes.

No pydantic and no numpy here: the reader makes Sights (`pendant.eyes.pipeline`), the eyes
service checks them (`Sight.from_dict`) and makes them into events (`pendant.eyes.seen`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_FACES = 100
MAX_TEXT = 500
MAX_LABELS = 20
MAX_LABEL = 100


@dataclass
class Sight:
    """What one look found, in plain values (the reader sends it as JSON): the faces' count,
    the text read (lines joined by newlines, "" for none) and the OCR's mean confidence, and
    the labels seen with their scores, best first."""

    face_count: int = 0
    text: str = ""
    confidence: float = 0.0
    labels: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Sight:
        """A Sight from a reader's answer, held to what a look makes; ValueError (or
        TypeError) otherwise."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("not a sight (face_count, text, confidence, labels)")
        count, text, confidence, labels = (
            data["face_count"], data["text"], data["confidence"], data["labels"],
        )  # fmt: skip
        if type(count) is not int or not 0 <= count <= MAX_FACES:
            raise ValueError(f"face_count {count!r} is not 0 to {MAX_FACES}")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise ValueError(f"a text that is not a string of at most {MAX_TEXT} characters")
        if type(confidence) not in (int, float) or not 0 <= confidence <= 1:
            raise ValueError(f"confidence {confidence!r} is not 0 to 1")
        if not isinstance(labels, list) or len(labels) > MAX_LABELS:
            raise ValueError(f"labels that are not a list of at most {MAX_LABELS}")
        pairs = []
        for label in labels:
            if not (
                isinstance(label, list)
                and len(label) == 2
                and isinstance(label[0], str)
                and len(label[0]) <= MAX_LABEL
            ):
                raise ValueError("a label that is not [name, score]")
            if type(label[1]) not in (int, float):
                raise ValueError("a label's score that is not a number")
            pairs.append((label[0], float(label[1])))
        return cls(count, text, float(confidence), pairs)
