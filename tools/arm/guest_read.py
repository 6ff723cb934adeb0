"""The eyes' "read this", counted by `make bench-arm`: run by an aarch64 CPython under qemu-user.

Not run directly: tools/bench_arm.py starts it as `python3.11 guest_read.py PLAN.json` under
`qemu-aarch64` with the insn_count plugin. It does what the eyes' reader does
(`pendant.eyes.worker.serve`), in the same order, marking each piece of work:

- `ready`: everything from the interpreter's start (the plugin counts from exec) to a reader
  that can take a frame: imports, the config, `Eyes(config, keep_models=False)`, pyclipper,
  the face guard loaded ahead of the frame (`Eyes.prepare`). A cold "read this" pays it;
- `read` ... `read_end`, one per image: `Eyes.see(frame, "read_this")`: the face guard masks
  it, the text detector and recogniser are loaded, run and let go (the reader keeps one model
  at a time), so each read pays loading the OCR models, as it does on the device. No detector:
  "read this" runs none (`what_is_this` does);
- `prepare` ... `prepare_end`: the face guard loaded again for a next frame, after the answer
  (energy, not latency).

With `"prepare": true` in the plan it only does what pendant-eyes-prepare.service does at boot
(`pendant prepare`: each model optimised for the board and kept) and marks `prepared`; the
counted reads then load the kept copies, as the eyes do.

Not counted: the eyes service's side (the camera, the pipe, making the scene's events), the
PNG decoding (the camera hands over raw RGB). The models take the threads the eyes give
onnxruntime on the board (`pendant.eyes.model_threads`): the guest is told it has the board's
cores (qemu-user would show it this machine's), and the plugin counts each thread apart.

The plan (JSON): {"config_json": the eyes' config as JSON, "cores": the board's cores,
"images": [png, ...]}. Each `read` mark says how many threads the models took.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from marks import dump, mark

mark("start")

import json  # noqa: E402
import os  # noqa: E402

_PLAN = json.loads(Path(sys.argv[1]).read_text())
# The board's cores, not this machine's: read where the eyes choose their threads.
os.sched_getaffinity = lambda pid: set(range(_PLAN["cores"]))  # type: ignore[assignment]

# What `python -m pendant.eyes.worker` imports before its first frame.
from pendant.core.logs import setup_logging  # noqa: E402
from pendant.eyes.worker import settings  # noqa: E402


def steps() -> None:
    """Marks around the steps inside a read (nested in its `read` mark), to say where its
    instructions go: `mask` (the face guard), `load` (an OCR model loaded: the reader keeps
    one at a time), `det` (text detection and its boxes), `cls` and `rec` (the direction
    classifier and the recogniser, each with its load). A Python call and a syscall each:
    thousands of instructions in billions."""
    from pendant.eyes import faces, ocr

    def marked(owner: type, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: object, **kwargs: object) -> object:
            mark(label)
            try:
                return inner(*args, **kwargs)
            finally:
                mark(label + "_end")

        setattr(owner, name, wrapper)

    marked(faces.FaceGuard, "mask", "mask")
    marked(ocr.TextReader, "_load", "load")
    marked(ocr.TextReader, "_detect", "det")
    marked(ocr.TextReader, "_upright", "cls")
    marked(ocr.TextReader, "_recognise", "rec")


def main() -> int:
    plan = _PLAN
    setup_logging()
    # The config as the eyes hand it over: one JSON line, read without pydantic.
    config = settings(Path(plan["config_json"]).read_bytes())
    from pendant.eyes.pipeline import Eyes

    if plan.get("prepare"):
        # What pendant-eyes-prepare.service does once at boot, before the eyes start: every
        # model optimised for this board and kept (the run whose reads are counted loads them
        # from there, as the eyes do).
        from pendant.eyes.look import prepare

        prepare(config)
        mark("prepared")
        dump()
        return 0
    eyes = Eyes(config, keep_models=False)
    import pyclipper  # noqa: F401

    eyes.prepare()
    from pendant.eyes import model_threads

    mark("ready")
    steps()

    import numpy as np
    from PIL import Image

    for png in plan["images"]:
        with Image.open(png) as image:
            frame = np.ascontiguousarray(np.asarray(image.convert("RGB")))
        mark("read", file=Path(png).name, width=frame.shape[1], height=frame.shape[0],
             threads=model_threads())  # fmt: skip
        sight = eyes.see(frame, "read_this")
        del frame
        mark("read_end", text=sight.text, faces=sight.face_count)
        mark("prepare")
        eyes.prepare()
        mark("prepare_end")
    eyes.close()
    dump()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
