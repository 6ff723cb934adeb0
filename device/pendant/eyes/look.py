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
    """`pendant prepare`: every model the eyes may run on the CPU (the face guard, the OCR's
    three, the CPU detector's) optimised for this board and kept where the eyes read them
    (`pendant.eyes.prepared_models`; on the device pendant-eyes-prepare.service runs it at
    boot: the eyes themselves write nothing). Opens no camera or accelerator. A model that
    will not load is a ModelError, one line; one that cannot be kept is a warning."""
    from pendant.core.model_cache import model_path
    from pendant.core.onnx_session import prepare as keep
    from pendant.eyes import OCR_MODEL, prepared_models
    from pendant.eyes.detectors.cpu import model_file
    from pendant.eyes.faces import load_onnx_bytes
    from pendant.eyes.ocr import MODELS

    ocr = model_path(config, OCR_MODEL)
    models = [
        (model_path(config, "retinaface"), load_onnx_bytes),
        *((ocr / f"{name}.onnx", None) for name in MODELS),
        (model_file(config), None),
    ]
    directory = prepared_models()
    kept = [keep(path, str(path), directory, build) for path, build in models]
    done = sum(path is not None for path in kept)
    print(f"{done} of {len(models)} models prepared for this board in {directory}")
    return 0
