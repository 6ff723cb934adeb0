"""The eyes' reader: a short-lived child process that holds the models while frames are read.

`python -m pendant.eyes.worker`, started by `pendant.eyes.reader.Reader`, never by hand. The
eyes service holds no model between requests: onnxruntime's sessions and buffers live here,
and go back to the system when this process exits. Even here the models are loaded one at a
time (`Eyes(..., keep_models=False)`): each is released, and the heap trimmed, before the next
one loads, so a capture's peak is the libraries and the largest model; only the face guard,
the first a frame meets, is loaded ahead of the frame.

It talks over its stdin and stdout, both pipes from the eyes service, so a frame goes from
RAM to RAM and never through a file. Lines of JSON, and a frame's raw bytes after its header:

    in:  the Config, as one JSON line (first, once)
    out: {"ready": "<detector class, "" until one was loaded>"}
         or {"error": "...", "kind": "..."} and exit 2
    in:  {"look": "<trigger>", "session_id": ..., "height": H, "width": W} + H*W*3 RGB bytes
    out: {"sight": {"face_count": N, "text": "...", "confidence": C, "labels": [[name, score]...]}}
         or {"error": "...", "kind": "..."}
    in:  {"warm_up": true}
    out: {"step": "..."}... then {"warm": true, "detector": "<detector class>"}

It exits when its stdin closes (the eyes let it go after `eyes.linger_s`, or themselves
stopped). It imports no pydantic (14 MB of its peak): the config arrives as the service
validated it and is read as plain attributes (`settings`), and what a frame shows goes back as
a Sight, which the service makes into events (`pendant.eyes.seen`). Like the eyes it has no
network: it inherits their sandbox, and opens nothing but the model files, read-only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, BinaryIO, cast

if TYPE_CHECKING:
    from pendant.core.config import Config
    from pendant.eyes.pipeline import Eyes

log = logging.getLogger(__name__)

CHANNELS = 3
MAX_PIXELS = 4056 * 3040
"""The largest frame the config allows (`eyes.width` x `eyes.height`)."""


def request_header(trigger: str, session_id: str | None, height: int, width: int) -> bytes:
    """The line that announces a frame of height x width RGB bytes to read for `trigger`."""
    header = {"look": trigger, "session_id": session_id, "height": height, "width": width}
    return json.dumps(header).encode() + b"\n"


def _reply(out: BinaryIO, message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def _error(exc: BaseException) -> dict[str, str]:
    """One line naming what failed: the pendant's own errors say it already."""
    from pendant.core.errors import PendantError

    text = str(exc) if isinstance(exc, PendantError) else f"{type(exc).__name__}: {exc}"
    return {"error": " ".join(text.split())[:300], "kind": type(exc).__name__}


def _look(eyes: Eyes, request: dict[str, Any], source: BinaryIO) -> dict[str, Any]:
    import numpy as np

    height, width = int(request["height"]), int(request["width"])
    if not (0 < height * width <= MAX_PIXELS):
        raise ValueError(f"a {width}x{height} frame is not one the eyes take")
    size = height * width * CHANNELS
    frame = np.empty((height, width, CHANNELS), dtype=np.uint8)
    view, got = memoryview(frame).cast("B"), 0
    while got < size:
        n = source.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise EOFError("the frame ended early")
        got += n
    sight = eyes.see(frame, request["look"])
    del frame
    return {"sight": sight.to_dict()}


def settings(line: bytes) -> Config:
    """The config line the eyes sent (their Config, validated there, as JSON) as plain
    attributes: `settings(line).eyes.detector.type`, without pydantic."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: plain(v) for k, v in value.items()})
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    config = plain(json.loads(line))
    if not isinstance(config, SimpleNamespace) or not hasattr(config, "eyes"):
        raise ValueError("the first line is not the eyes' config")
    return cast("Config", config)


def serve(source: BinaryIO, out: BinaryIO) -> int:
    """Loads the models for the config read first from `source`, then answers requests until
    `source` ends; 0, or 2 when the models cannot load."""
    try:
        config = settings(source.readline())
        from pendant.eyes.pipeline import Eyes

        eyes = Eyes(config, keep_models=False)
        # OCR's helper is imported on first use: now, while the camera takes the frame. Not
        # OpenCV (27 MB): OCR's geometry is numpy's (`pendant.eyes.geometry`); only a detector
        # ("what is this") still imports it.
        import pyclipper  # noqa: F401

        # The face guard too (a warm-up's first step takes it as a frame would).
        eyes.prepare()
    except Exception as exc:  # told to the eyes, which say it in one line
        _reply(out, _error(exc))
        return 2
    try:
        _reply(out, {"ready": eyes.detector_name})
        while line := source.readline():
            request = json.loads(line)
            if request.get("warm_up"):
                eyes.warm_up(lambda step: _reply(out, {"step": step}))
                _reply(out, {"warm": True, "detector": eyes.detector_name})
                continue
            try:
                _reply(out, _look(eyes, request, source))
            except EOFError:
                return 0  # the eyes went away mid-frame: nobody is waiting for the answer
            except Exception as exc:  # one frame failed: say so, and stay for the next
                log.error("reading a frame: %s", exc)
                _reply(out, _error(exc))
            # The answer is out: the face guard loads for a next frame while none is asked.
            eyes.prepare()
    finally:
        eyes.close()
    return 0


def main() -> int:
    from pendant.core.logs import setup_logging

    setup_logging()
    # Replies go to a copy of the stdout pipe; the descriptor 1 itself becomes stderr, so a
    # library that prints cannot corrupt them.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        return serve(sys.stdin.buffer, out)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
