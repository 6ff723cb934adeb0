"""Render the eyes' demo images: text on plain labels, drawn with Pillow, never downloaded.

    python tools/eyes_demo_images.py        # rewrites device/pendant/data/eyes/*.png

The simulated camera serves these in `make run` when `eyes.files` is empty; the tests render
their own with `render_text`. DejaVu Sans (Debian's fonts-dejavu-core) is used where it is
installed, else Pillow's built-in font, so the images look the same on any machine with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "device" / "pendant" / "data" / "eyes"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

DEMO = {
    "oat-milk.png": ["ORGANIC OAT MILK", "Best before 12 MAR 2027"],
    "platform.png": ["Platform 4", "Trains to Cambridge"],
    "note.png": ["Call the dentist", "on Monday at 9"],
}


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if DEJAVU.is_file():
        return ImageFont.truetype(str(DEJAVU), size)
    return ImageFont.load_default(size)


def render_text(
    lines: list[str],
    size: tuple[int, int] = (640, 480),
    font_px: int = 40,
    background: tuple[int, int, int] = (235, 230, 215),
    ink: tuple[int, int, int] = (20, 20, 20),
) -> Image.Image:
    """`lines` centred on a plain card, as a label held up to the camera would look."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    face = font(font_px)
    gap = font_px // 2
    heights = [draw.textbbox((0, 0), line, font=face)[3] for line in lines]
    y = (size[1] - sum(heights) - gap * (len(lines) - 1)) // 2
    for line, h in zip(lines, heights, strict=True):
        width = draw.textlength(line, font=face)
        draw.text(((size[0] - width) / 2, y), line, font=face, fill=ink)
        y += h + gap
    return image


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, lines in DEMO.items():
        # A palette of a few greys keeps each PNG to a few KB in the package.
        image = render_text(lines).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
        image.save(OUT / name, optimize=True)
        print(OUT / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
