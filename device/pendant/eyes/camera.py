"""Where frames come from: one interface, a real and a simulated backend.

A camera is opened for one frame and closed again before `capture()` returns, so it is never
open while nobody asked for a frame, and a mute never has to close it. Frames are RGB uint8
arrays in RAM. The backends are registered in pendant.core.backends (`CAMERAS`); picamera2 is
imported only when the real camera is used, so the package imports on any machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pendant.core.backends import CAMERAS
from pendant.core.errors import BackendUnavailable, PendantError
from pendant.eyes.images import fit, load_image

if TYPE_CHECKING:
    import numpy as np

    from pendant.core.config import EyesConfig


class CameraError(PendantError, OSError):
    """The camera could not deliver a frame."""


class CameraBackend(Protocol):
    """What every camera backend provides (`create_camera` builds the configured one)."""

    opens: int
    """How many times the camera was opened: a test's proof that a muted one never was."""

    def capture(self) -> np.ndarray:
        """Open the camera, take one RGB frame, close it. Blocking."""

    def close(self) -> None:
        """Releases what the backend holds between frames (the camera itself is never left open)."""
        ...


def demo_images() -> list[Path]:
    """The images bundled for `make run` (text rendered by tools/eyes_demo_images.py)."""
    folder = resources.files("pendant").joinpath("data/eyes")
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


class FileCamera:
    """The simulated camera: serves image files in turn, as the real one would frames."""

    def __init__(self, files: list[str | Path], width: int = 640, height: int = 480) -> None:
        paths = [Path(f) for f in files] or demo_images()
        if not paths:
            raise CameraError("eyes.files is empty and there are no demo images")
        self.paths = paths
        self.width = width
        self.height = height
        self.opens = 0
        self._next: Iterator[Path] = itertools.cycle(paths)

    @classmethod
    def from_config(cls, config: EyesConfig) -> FileCamera:
        """The camera `eyes.camera = 'files'` stands for."""
        return cls(list(config.files), config.width, config.height)

    def capture(self) -> np.ndarray:
        """The next file in turn (the list starts again at its end), scaled down to fit width x
        height; CameraError when it cannot be read."""
        self.opens += 1
        path = next(self._next)
        try:
            return fit(load_image(path), self.width, self.height)
        except PendantError as exc:
            raise CameraError(f"camera: {exc}") from None

    def close(self) -> None:
        """Nothing to release: each frame's file is read whole, and closed."""
        pass


NO_CAMERA = (
    "camera: libcamera finds no camera: seat the ribbon cable; on the Debian image none can be "
    "found (its kernel has no driver for the Pi's camera port): use Raspberry Pi OS"
)


class PiCamera:
    """A Raspberry Pi camera through picamera2 (libcamera), opened once per frame."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        self._picamera2 = _picamera2()
        self.width = width
        self.height = height
        self.opens = 0

    @classmethod
    def from_config(cls, config: EyesConfig) -> PiCamera:
        """The camera `eyes.camera = 'picamera2'` stands for."""
        return cls(config.width, config.height)

    @staticmethod
    def cameras() -> list[str]:
        """The models of the cameras libcamera finds, none opened (what `pendant doctor`
        lists); BackendUnavailable without picamera2, CameraError when libcamera fails."""
        picamera2 = _picamera2()
        try:
            found = picamera2.Picamera2.global_camera_info()
        except Exception as exc:  # libcamera raises a variety of errors when the stack is off
            raise CameraError(f"libcamera: {exc}") from None
        return [str(c.get("Model", "?")) for c in found]

    @classmethod
    def present(cls) -> bool:
        """Whether libcamera finds a camera here."""
        try:
            return bool(cls.cameras())
        except (BackendUnavailable, CameraError):
            return False

    def capture(self) -> np.ndarray:
        """Opens the camera, takes one RGB frame of width x height and closes it again before
        returning; CameraError when there is none, it cannot open or gives no frame. Blocking."""
        self.opens += 1
        # Asked first: with no camera, picamera2's own error sends the wearer to rpicam-hello,
        # a tool the Debian image does not have.
        if not self.cameras():
            raise CameraError(NO_CAMERA)
        try:
            cam = self._picamera2.Picamera2()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraError(f"camera: cannot open it: {exc}") from None
        try:
            config = cam.create_still_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"}
            )
            cam.configure(config)
            cam.start()
            frame = cam.capture_array("main")
        except (RuntimeError, OSError) as exc:
            raise CameraError(f"camera: no frame: {exc}") from None
        finally:
            # Closed right away: the sensor (and the LED the hardware wires to it) is off
            # again before the frame is even looked at.
            try:
                cam.stop()
            finally:
                cam.close()
        # libcamera's "RGB888" is B, G, R in memory order.
        import numpy as np

        return np.ascontiguousarray(frame[:, :, ::-1])

    def close(self) -> None:
        """Nothing to release: the camera is closed after every frame."""
        pass


def _picamera2() -> Any:
    try:
        import picamera2
    except ImportError as exc:
        raise BackendUnavailable(
            f"eyes.camera 'picamera2' cannot load ({exc}): on Raspberry Pi OS install "
            "python3-picamera2 and create the venv with --system-site-packages, or set "
            "eyes.camera = 'files'"
        ) from None
    return picamera2


def create_camera(config: EyesConfig) -> CameraBackend:
    """The configured camera; BackendUnavailable (what to install) when it cannot be had."""
    return CAMERAS.load(config.camera).from_config(config)
