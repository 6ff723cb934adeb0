"""Images for the eyes' tests, made here rather than downloaded.

Text is rendered with Pillow (tools/eyes_demo_images.py). The face is scikit-image's
`data.astronaut()`: NASA's public-domain portrait of Eileen Collins, shipped inside the
scikit-image wheel (no download), so no photo of anyone is taken from the internet.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pendant.core.config import Config
from pendant.core.errors import ModelError
from pendant.core.model_cache import model_path
from pendant.setup.fetch_models import fetch
from tests.conftest import REPO, demo_config

EYES_MODELS = ("retinaface", "ppocr-v6", "picodet-layout")


def render_text(lines: list[str], **kwargs: object) -> Image.Image:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        from eyes_demo_images import render_text as render  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return render(lines, **kwargs)  # type: ignore[arg-type]


def face_image() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.asarray(data.astronaut())


def save_png(image: Image.Image | np.ndarray, path: Path) -> Path:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    image.save(path)
    return path


def normalise(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def eyes_config(**eyes: object) -> Config:
    """The demo home with its eyes' models in the cache (fetched once if missing)."""
    config = demo_config()
    try:
        for name in EYES_MODELS:
            model_path(config, name)
    except ModelError:
        fetch(config, EYES_MODELS, progress=False)
    if eyes:
        config = config.model_copy(update={"eyes": config.eyes.model_copy(update=eyes)})
    return config
