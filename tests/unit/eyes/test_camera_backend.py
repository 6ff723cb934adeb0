"""The picamera2 backend through the camera interface, with a stand-in for picamera2.

picamera2 (libcamera) is only on a Raspberry Pi; the stand-in raises what picamera2 0.3 raises
with no camera attached (`Picamera2()`: RuntimeError "No camera number 0 found ...") and lists
what `global_camera_info()` lists. What a real camera gives is for a board.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from pendant.core.config import Config
from pendant.core.errors import BackendUnavailable
from pendant.eyes.camera import CameraError, create_camera


class _StandInPicamera2:
    """Behaves as picamera2.Picamera2 does: a class-level camera list, frames in BGR order."""

    cameras: list[dict] = []  # noqa: RUF012 (set per test)
    listing_error: Exception | None = None
    opened = 0

    @classmethod
    def global_camera_info(cls) -> list[dict]:
        if cls.listing_error is not None:
            raise cls.listing_error
        return list(cls.cameras)

    def __init__(self) -> None:
        if not self.cameras:
            raise RuntimeError(
                'No camera number 0 found - use "rpicam-hello --list-cameras" to check '
                "connected cameras"
            )
        type(self).opened += 1
        self.running = False

    def create_still_configuration(self, main: dict) -> dict:
        return {"main": main}

    def configure(self, config: dict) -> None:
        self.size = config["main"]["size"]

    def start(self) -> None:
        self.running = True

    def capture_array(self, name: str) -> np.ndarray:
        width, height = self.size
        frame = np.zeros((height, width, 3), np.uint8)
        frame[..., 0] = 255  # blue, in libcamera's RGB888 memory order (B, G, R)
        return frame

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        pass


@pytest.fixture
def picamera2(monkeypatch: pytest.MonkeyPatch) -> type[_StandInPicamera2]:
    module = types.ModuleType("picamera2")
    cls = type("Picamera2", (_StandInPicamera2,), {"cameras": [], "opened": 0})
    module.Picamera2 = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)
    return cls


def _camera():
    return create_camera(Config.model_validate({"eyes": {"camera": "picamera2"}}).eyes)


def test_no_camera_is_a_one_line_error_that_says_so(picamera2) -> None:
    camera = _camera()
    with pytest.raises(CameraError) as err:
        camera.capture()
    message = str(err.value)
    assert "\n" not in message and "no camera" in message
    assert "rpicam-hello" not in message  # a tool the Debian image does not have
    assert picamera2.opened == 0


def test_libcamera_failing_to_list_is_a_one_line_error(picamera2) -> None:
    picamera2.listing_error = OSError("Failed to open /dev/media0: Permission denied")
    with pytest.raises(CameraError, match=r"^libcamera: Failed to open /dev/media0"):
        _camera().capture()


def test_a_camera_gives_an_rgb_frame_and_is_closed_again(picamera2) -> None:
    picamera2.cameras = [{"Model": "imx219", "Id": "/base/soc/i2c0mux/i2c@1/imx219@10"}]
    camera = _camera()
    frame = camera.capture()
    assert frame.shape == (480, 640, 3)
    assert tuple(frame[0, 0]) == (0, 0, 255)  # B, G, R in memory -> R, G, B
    assert camera.opens == 1 and picamera2.opened == 1


def test_without_picamera2_the_backend_names_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(BackendUnavailable) as err:
        _camera()
    assert "\n" not in str(err.value) and "eyes.camera = 'files'" in str(err.value)
