"""Image files to frames: RGB uint8 arrays, in memory only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pendant.core.errors import PendantError

if TYPE_CHECKING:
    import numpy as np

# Decompression bombs: a camera frame is a few megapixels; refuse what could not be one.
MAX_PIXELS = 40_000_000


class ImageError(PendantError, ValueError):
    """A file that cannot be read as an image."""


def load_image(path: str | Path) -> np.ndarray:
    """The file as an H x W x 3 RGB uint8 array; ImageError (one line naming it) otherwise."""
    # Here, not at the top: the eyes service imports this and holds no frame until asked.
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageError(f"{p}: {image.width}x{image.height} is too large for a frame")
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{p}: is a directory, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image file (PNG, JPEG, ...)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageError):
            raise
        raise ImageError(f"{p}: cannot read the image: {exc}") from None


def fit(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scale down (never up) to fit width x height, as the camera would deliver it."""
    h, w = frame.shape[:2]
    scale = min(width / w, height / h, 1.0)
    if scale >= 1.0:
        return frame
    import cv2

    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
