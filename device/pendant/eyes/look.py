"""`pendant look IMAGE...`: the eyes on image files, one Scene JSON line per file; and
`pendant prepare`, their models made ready for this board.

The same pipeline as for camera frames: faces masked, then OCR and the detector.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pendant.eyes.images import ImageError, fit, load_image

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.eyes.pipeline import Trigger


def look(config: Config, files: list[Path], trigger: Trigger = "what_is_this") -> int:
    """`pendant look`: each image file seen as a camera frame is for `trigger`, printed as one
    Scene JSON line; returns 2, before any model loads, if a file cannot be read."""
    from pendant.eyes.pipeline import Eyes

    # Every file is checked before the models load, so a typo costs no waiting.
    frames = []
    for path in files:
        try:
            frames.append(fit(load_image(path), config.eyes.width, config.eyes.height))
        except ImageError as exc:
            print(f"pendant: error: {exc}", file=sys.stderr)
            return 2
    eyes = Eyes(config)
    try:
        for frame in frames:
            print(eyes.look(frame, trigger).scene.to_json().decode(), flush=True)
    finally:
        eyes.close()
    return 0


def prepare(config: Config) -> int:
    """`pendant prepare`: the eyes' models loaded once each, so that the copies prepared for
    this board are there before the eyes start (`pendant-eyes-prepare.service`; the eyes
    themselves may not write: see `pendant.core.onnx_session`). A model that will not load is
    a ModelError, one line."""
    from pendant.eyes.pipeline import Eyes

    Eyes(config, keep_models=False).load_each()
    return 0
