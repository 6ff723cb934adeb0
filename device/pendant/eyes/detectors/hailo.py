"""A Hailo-8/8L (the Raspberry Pi AI Kit/HAT+) through hailo_platform, with a compiled .hef.

Expects a detection HEF with Hailo's NMS on the chip (the Model Zoo's yolov8n/yolov5s), whose
output is, per class, an array of [y_min, x_min, y_max, x_max, score] rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import BackendUnavailable
from pendant.eyes.detectors import Detection, Detector, read_labels

if TYPE_CHECKING:
    from pendant.core.config import Config


class HailoDetector(Detector):
    """A detection HEF on a Hailo-8/8L (`eyes.detector.type = 'hailo'`); the constructor raises
    BackendUnavailable without a model, hailo_platform, or the device."""

    type = "hailo"
    device_paths = ("/dev/hailo0",)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        hef_path = config.eyes.detector.model
        if not hef_path:
            raise BackendUnavailable("the hailo detector needs eyes.detector.model (a .hef file)")
        try:
            import hailo_platform

            hp: Any = hailo_platform
        except ImportError as exc:
            raise BackendUnavailable(
                f"hailo_platform cannot load ({exc}): install Raspberry Pi OS's hailo-all"
            ) from None
        self.labels = read_labels(config.eyes.detector.labels)
        try:
            self.hef = hp.HEF(hef_path)
            self.device = hp.VDevice()
            params = hp.ConfigureParams.create_from_hef(
                self.hef, interface=hp.HailoStreamInterface.PCIe
            )
            self.group = self.device.configure(self.hef, params)[0]
            self.input_info = self.hef.get_input_vstream_infos()[0]
            self.in_params = hp.InputVStreamParams.make(self.group, format_type=hp.FormatType.UINT8)
            self.out_params = hp.OutputVStreamParams.make(
                self.group, format_type=hp.FormatType.FLOAT32
            )
        except Exception as exc:  # hailo_platform raises its own untyped errors
            self.close()
            raise BackendUnavailable(f"hailo: cannot load {hef_path}: {exc}") from None
        self._hp = hp

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """What the Hailo finds in an RGB frame, best first, at or above `min_score`; without boxes.
        Blocking."""
        import cv2

        height, width = self.input_info.shape[:2]
        x = cv2.resize(frame, (width, height))[None]
        with (
            self._hp.InferVStreams(self.group, self.in_params, self.out_params) as pipeline,
            self.group.activate(self.group.create_params()),
        ):
            results = pipeline.infer({self.input_info.name: x})
        per_class = next(iter(results.values()))[0]
        found = []
        for k, rows in enumerate(per_class):
            for row in np.asarray(rows).reshape(-1, 5):
                if row[4] >= self.min_score:
                    label = self.labels[k] if k < len(self.labels) else f"class_{k}"
                    found.append(Detection(label, float(row[4])))
        return sorted(found, key=lambda d: -d.score)

    def close(self) -> None:
        """Releases the Hailo device (another process may then use it); idempotent."""
        device = getattr(self, "device", None)
        if device is not None:
            device.release()
            self.device = None
