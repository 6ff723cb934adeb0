"""A Coral Edge TPU (USB or M.2) through ai-edge-litert and the libedgetpu delegate.

Expects an SSD compiled for the Edge TPU (e.g. ssd_mobilenet_v2_coco_quant_postprocess_edgetpu
.tflite) whose outputs are boxes, classes, scores and a count.
"""

from __future__ import annotations

import glob
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from pendant.core.errors import BackendUnavailable
from pendant.eyes.detectors import Detection, Detector, read_labels

if TYPE_CHECKING:
    from pendant.core.config import Config

DELEGATE = "libedgetpu.so.1"
# Where Coral's Debian package puts the delegate. Looked up by path, not with
# ctypes.util.find_library, which runs gcc and ld and has them write temporary files: the eyes
# write nothing, and the privacy audit holds them to it.
DELEGATE_GLOBS = (
    "/usr/lib/*/libedgetpu.so.1",
    "/usr/lib/libedgetpu.so.1",
    "/usr/local/lib/libedgetpu.so.1",
)


class CoralDetector(Detector):
    """An SSD on a Coral Edge TPU (`eyes.detector.type = 'coral'`); the constructor raises
    BackendUnavailable without a model, ai-edge-litert, or the Edge TPU itself."""

    type = "coral"
    device_paths: ClassVar[tuple[str, ...]] = ("/dev/apex_0",)

    @classmethod
    def present(cls) -> bool:
        """Whether a Coral may be here: an M.2 one's device node, or the delegate library a USB one
        needs (installed, it says yes with no Coral plugged in)."""
        # A USB Coral has no device node of its own: its delegate library is the sign.
        return super().present() or any(glob.glob(pattern) for pattern in DELEGATE_GLOBS)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        model = config.eyes.detector.model
        if not model:
            raise BackendUnavailable("the coral detector needs eyes.detector.model (.tflite)")
        try:
            from ai_edge_litert import interpreter

            litert: Any = interpreter
        except ImportError as exc:
            raise BackendUnavailable(
                f"ai-edge-litert cannot load ({exc}): pip install ai-edge-litert"
            ) from None
        self.labels = read_labels(config.eyes.detector.labels)
        try:
            delegate = litert.load_delegate(DELEGATE)
            self.interpreter = litert.Interpreter(
                model_path=model, experimental_delegates=[delegate]
            )
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendUnavailable(f"coral: cannot load {model} on the Edge TPU: {exc}") from None
        self.input = self.interpreter.get_input_details()[0]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """What the Edge TPU finds in an RGB frame, best first, at or above `min_score`; without
        boxes (the model's are not read). Blocking."""
        import cv2

        _, height, width, _ = self.input["shape"]
        x = cv2.resize(frame, (int(width), int(height)))[None].astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        out = [
            self.interpreter.get_tensor(o["index"]) for o in self.interpreter.get_output_details()
        ]
        _boxes, classes, scores, count = out[:4]
        found = []
        for k, score in zip(classes[0][: int(count[0])], scores[0][: int(count[0])], strict=True):
            if score >= self.min_score:
                label = self.labels[int(k)] if int(k) < len(self.labels) else f"class_{int(k)}"
                found.append(Detection(label, float(score)))
        return sorted(found, key=lambda d: -d.score)
