"""The eyes: one frame on request, read on the device, published as words.

A frame is taken only when asked (a capture command, a double press, "read this", "what is
this"), lives only in RAM, and is dropped as soon as it is read. Faces are masked before OCR
or a detector sees it; only their count leaves. Nothing here writes an image anywhere.

    camera.py     where frames come from: picamera2 or image files, chosen by config
    images.py     image files to RGB arrays (the simulated camera, `pendant look`)
    faces.py      the face guard (RetinaFace, onnxruntime)
    ocr.py        text (PP-OCRv6 small, onnxruntime)
    detectors/    objects: one base class, one file per backend (cpu, hailo, coral, imx500)
    pipeline.py   frame -> Sight (faces, text, labels), the models held or one at a time
    sight.py      the Sight: plain values, the reader's answer
    seen.py       Sight -> Scene (and the intent that carries it to Hermes)
    worker.py     the reader: a child process that runs the models, one at a time
    reader.py     the service's side of it: start, hand a frame over a pipe, let go
    service.py    the eyes on the bus (`pendant service eyes`)
    look.py       `pendant look IMAGE...`, and `pendant prepare` (the models kept prepared)
"""

import os
from pathlib import Path

# The manifest's name for the OCR models (pendant/data/models.toml). Here, not in ocr.py: the
# eyes service checks the models are there without importing numpy (it holds no frame at idle).
OCR_MODEL = "ppocr-v6"


def model_threads() -> int:
    """onnxruntime threads for each of the eyes' models: every core but one, which stays the
    ears' (they keep listening while a frame is read), and at most three: a Pi's four cores.

    One on a 2-core machine: there, one thread was faster than a pool fighting the ears for
    the CPU (`make bench`: eyes_total_ms_p50)."""
    return max(1, min(3, len(os.sched_getaffinity(0)) - 1))


def prepared_models() -> Path:
    """Where the eyes' models prepared for this machine are (`pendant prepare` makes them, the
    eyes only read them: `pendant.core.onnx_session`): $CACHE_DIRECTORY (on the device
    pendant-eyes-prepare.service's CacheDirectory=, which the eyes' unit names), else the
    user's cache."""
    directory = os.environ.get("CACHE_DIRECTORY")
    return Path(directory) if directory else Path.home() / ".cache" / "pendant" / "eyes"
