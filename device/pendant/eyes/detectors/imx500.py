"""The Raspberry Pi AI Camera: the IMX500 sensor runs the network itself (picamera2's helper).

The sensor detects on the frame it takes, before the face guard could mask it; only labels
come back from it, never pixels, so nothing a face could be recognised from leaves the eyes.
The detector takes its own frame from the sensor while the eyes are already capturing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pendant.core.errors import BackendUnavailable
from pendant.eyes.detectors import Detection, Detector, read_labels

if TYPE_CHECKING:
    from pendant.core.config import Config


class Imx500Detector(Detector):
    """The AI Camera's own network (`eyes.detector.type = 'imx500'`, an .rpk model); the constructor
    raises BackendUnavailable without a model, picamera2, or the sensor."""

    type = "imx500"
    # The sensor's I2C driver binds only when an AI Camera is attached.
    device_paths = ("/sys/bus/i2c/drivers/imx500",)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        model = config.eyes.detector.model
        if not model:
            raise BackendUnavailable("the imx500 detector needs eyes.detector.model (.rpk)")
        try:
            import picamera2
            from picamera2 import devices as picamera2_devices

            self._picamera2: Any = picamera2
            devices: Any = picamera2_devices
        except ImportError as exc:
            raise BackendUnavailable(
                f"picamera2 cannot load ({exc}): install python3-picamera2"
            ) from None
        try:
            self.imx500 = devices.IMX500(model)
        except (RuntimeError, OSError, ValueError) as exc:
            raise BackendUnavailable(f"imx500: cannot load {model}: {exc}") from None
        self.labels = read_labels(config.eyes.detector.labels)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """What the sensor finds in a frame it takes itself (`frame` is not looked at), best first,
        at or above `min_score`, without boxes; [] when the sensor gives no outputs. Opens and
        closes the camera; blocking."""
        cam = self._picamera2.Picamera2(self.imx500.camera_num)
        try:
            cam.configure(cam.create_still_configuration())
            cam.start()
            metadata = cam.capture_metadata()
            outputs = self.imx500.get_outputs(metadata, add_batch=True)
        finally:
            try:
                cam.stop()
            finally:
                cam.close()
        if outputs is None:
            return []
        _boxes, scores, classes = outputs[0][0], outputs[1][0], outputs[2][0]
        found = []
        for score, k in zip(scores, classes, strict=True):
            if score >= self.min_score:
                label = self.labels[int(k)] if int(k) < len(self.labels) else f"class_{int(k)}"
                found.append(Detection(label, float(score)))
        return sorted(found, key=lambda d: -d.score)
