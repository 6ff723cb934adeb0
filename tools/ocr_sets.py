"""The eyes' OCR test images, rendered here with Pillow: nothing is downloaded.

Text on cards (a label, a sign, a menu line, a letter) in a 640 x 480 frame, from Debian's fonts
(fonts-dejavu-core, fonts-liberation), seeded so every run renders the same pixels; the demo
labels and scikit-image's photo of a printed page; scikit-image's photos without text. Used by
tools/measure_ocr.py, which says what each part is for.

    python tools/ocr_sets.py DIR      # writes every image as PNG, to look at
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

REPO = Path(__file__).resolve().parents[1]
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
WIDTH, HEIGHT = 640, 480
SEED = 17

TUNE_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
HELDOUT_FONTS = (
    "LiberationSans-Regular.ttf",
    "LiberationSans-Bold.ttf",
    "LiberationSerif-Regular.ttf",
    "LiberationMono-Regular.ttf",
)

# (kind, lines): "label" lines are centred as set; "letter" is a paragraph wrapped to the card.
TUNE_TEXTS: list[tuple[str, list[str]]] = [
    ("label", ["IBUPROFEN 200 mg", "Take 1 or 2 tablets", "every 4 to 6 hours",
               "Do not exceed 6 in 24 hours"]),
    ("label", ["NO ENTRY"]),
    ("label", ["Soup of the day 4.50"]),
    ("label", ["Fresh whole milk", "Use by 03 JUN 2027", "Keep refrigerated"]),
    ("label", ["Platform 2", "Northbound trains"]),
    ("label", ["WET FLOOR"]),
    ("label", ["Garlic bread 3.20", "Tomato soup 4.75", "Green salad 5.10"]),
    ("letter", ["Dear Mrs Patel, your appointment at the eye clinic is on Tuesday 14 May at "
                "10:30. Please bring your glasses and a list of your medicines."]),
    ("label", ["Opening hours", "Mon to Fri 9am to 5pm"]),
    ("letter", ["Thank you for your order. Your parcel will arrive within three working days. "
                "If nobody is at home we will leave a card."]),
]  # fmt: skip
HELDOUT_TEXTS: list[tuple[str, list[str]]] = [
    ("label", ["AMOXICILLIN 250 mg capsules", "Take one three times a day",
               "Finish the whole course"]),
    ("label", ["EMERGENCY EXIT"]),
    ("label", ["Fish and chips 9.95"]),
    ("label", ["Greek yoghurt", "Best before 21 OCT 2027", "Store below 5C"]),
    ("label", ["Gate B12", "Boarding closes at 14:05"]),
    ("label", ["Mind the step"]),
    ("label", ["Espresso 2.10", "Cappuccino 2.90", "Hot chocolate 3.40"]),
    ("letter", ["Dear Mr Jones, we are writing to remind you that your library books are now "
                "two weeks overdue. Please return them to the front desk."]),
    ("label", ["Pharmacy closed on Sunday"]),
    ("letter", ["Your new bank card is enclosed. Sign the back of the card straight away and "
                "destroy your old card by cutting through the chip."]),
]  # fmt: skip
CONDITIONS = ("clean", "rotated", "tilted", "blurred", "glare", "jpeg", "lowres", "mixed")

# The demo images' text (tools/eyes_demo_images.py) and scikit-image's photo of a printed page
# (the line cut off at its foot is not counted).
PAGE_LINES = [
    "Region-based segmentation",
    "Let us first determine markers of the coins and the",
    "background. These markers are pixels that we can label",
    "unambiguously as either object or background. Here,",
    "the markers are found at the two extreme parts of the",
    "histogram of grey values:",
    ">>> markers = np.zeros_like(coins)",
]
NO_TEXT = (
    "chelsea",
    "coffee",
    "astronaut",
    "camera",
    "brick",
    "gravel",
    "grass",
    "hubble_deep_field",
)


@dataclass
class Sample:
    part: str
    name: str
    frame: np.ndarray  # RGB uint8, as the camera delivers it
    lines: list[str]  # the text in it; empty for none
    condition: str = ""


class SetError(RuntimeError):
    """A font or sample image that is not installed (one line naming what to install)."""


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return ImageFont.truetype(str(folder / name), size)
    package = "fonts-liberation" if name.startswith("Liberation") else "fonts-dejavu-core"
    raise SetError(f"font {name} is not installed: apt-get install {package} (or `make apt`)")


def _wrap(text: str, face: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return lines


def _card(
    kind: str, text: list[str], font: str, rng: np.random.Generator
) -> tuple[Image.Image, list[str]]:
    """The text set on a card of its own colours, and the lines as set."""
    if kind == "letter":
        size = int(rng.integers(17, 24))
        face = _font(font, size)
        lines = _wrap(text[0], face, int(rng.integers(380, 520)))
    else:
        longest = max(len(line) for line in text)
        size = int(min(rng.integers(24, 60), 900 / max(longest, 1)))
        face = _font(font, size)
        lines = list(text)
    pad, gap = size, size // 2
    widths = [face.getlength(line) for line in lines]
    ascent, descent = face.getmetrics()
    card_w = int(max(widths)) + 2 * pad
    card_h = len(lines) * (ascent + descent) + (len(lines) - 1) * gap + 2 * pad
    dark = rng.random() < 0.25  # a sign in white on a dark ground
    paper = tuple(int(v) for v in (rng.integers(20, 70, 3) if dark else rng.integers(215, 256, 3)))
    ink = tuple(int(v) for v in (rng.integers(225, 256, 3) if dark else rng.integers(0, 60, 3)))
    card = Image.new("RGB", (card_w, card_h), paper)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(card)
    y = pad
    for line, width in zip(lines, widths, strict=True):
        x = pad if kind == "letter" else (card_w - width) / 2
        draw.text((x, y), line, font=face, fill=ink)  # type: ignore[arg-type]
        y += ascent + descent + gap
    return card, lines


def _background(rng: np.random.Generator) -> Image.Image:
    """A table or wall behind the card: a colour with smooth blotches and grain."""
    base = rng.integers(60, 200, 3).astype(np.float32)
    small = rng.normal(0, 18, (6, 8, 1)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(small[:, :, 0]).resize((WIDTH, HEIGHT), Image.BICUBIC))
    grain = rng.normal(0, 4, (HEIGHT, WIDTH, 1))
    pixels = base[None, None, :] + blotch[:, :, None] + grain
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _perspective(image: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    """As if the card were held at an angle: its corners pulled by up to `amount` of its size."""
    w, h = image.size
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    src = [
        (x + rng.uniform(-amount, amount) * w, y + rng.uniform(-amount, amount) * h) for x, y in dst
    ]
    # PIL wants the coefficients mapping output to input pixels.
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a), np.array(src).reshape(8))
    return image.transform((w, h), Image.PERSPECTIVE, tuple(coeffs), Image.BICUBIC)


def _light(frame: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Light falling off across the frame, and a glare spot."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / WIDTH + np.sin(angle) * yy / HEIGHT) + 1
    shade = 1 - strength * 0.45 * ramp / ramp.max()
    cx, cy = rng.uniform(0.2, 0.8) * WIDTH, rng.uniform(0.2, 0.8) * HEIGHT
    radius = rng.uniform(50, 130)
    glare = strength * 200 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * radius**2))
    out = frame.astype(np.float32) * shade[:, :, None] + glare[:, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _render(kind: str, text: list[str], font: str, condition: str, seed: int) -> Sample:
    rng = np.random.default_rng(seed)
    card, lines = _card(kind, text, font, rng)
    card = card.convert("RGBA")  # what the tilt and the turn uncover stays see-through
    mild = condition == "mixed"
    if condition in ("tilted", "mixed"):
        card = _perspective(card, rng, 0.05 if mild else 0.1)
    angle = rng.uniform(-1.5, 1.5)
    if condition == "rotated":
        angle = rng.choice([-1, 1]) * rng.uniform(4, 9)
    elif mild:
        angle = rng.uniform(-4, 4)
    card = card.rotate(angle, Image.BICUBIC, expand=True)
    # The card fills most of the frame, as a label held up to be read does.
    scale = min(WIDTH * rng.uniform(0.7, 0.95) / card.width, HEIGHT * 0.9 / card.height, 1.6)
    card = card.resize(
        (max(1, int(card.width * scale)), max(1, int(card.height * scale))), Image.BICUBIC
    )
    frame = _background(rng)
    x = int(rng.integers(0, max(1, WIDTH - card.width)))
    y = int(rng.integers(0, max(1, HEIGHT - card.height)))
    frame.paste(card, (x, y), card)
    if condition in ("blurred", "mixed"):
        frame = frame.filter(
            ImageFilter.GaussianBlur(rng.uniform(0.8, 1.2) if mild else rng.uniform(1.5, 2.2))
        )
    if condition in ("lowres", "mixed"):
        factor = rng.uniform(0.5, 0.6) if mild else rng.uniform(0.3, 0.4)
        small = frame.resize((int(WIDTH * factor), int(HEIGHT * factor)), Image.BILINEAR)
        frame = small.resize((WIDTH, HEIGHT), Image.BILINEAR)
    pixels = np.asarray(frame)
    if condition in ("glare", "mixed"):
        pixels = _light(pixels, rng, 0.5 if mild else 0.9)
    pixels = np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)
    frame = Image.fromarray(pixels)
    if condition in ("jpeg", "mixed"):
        frame = _jpeg(frame, int(rng.integers(30, 45) if mild else rng.integers(8, 16)))
    return Sample("", "", np.asarray(frame.convert("RGB")).copy(), lines, condition)


def rendered(part: str) -> Iterator[Sample]:
    """The tune or heldout part: every text in every font of the part, the conditions spread
    over texts and fonts alike."""
    texts, fonts = (TUNE_TEXTS, TUNE_FONTS) if part == "tune" else (HELDOUT_TEXTS, HELDOUT_FONTS)
    for t, (kind, text) in enumerate(texts):
        for f, font in enumerate(fonts):
            n = t * len(fonts) + f
            condition = CONDITIONS[(t + 3 * f) % len(CONDITIONS)]
            seed = SEED * 1000 + n + (500 if part == "heldout" else 0)
            sample = _render(kind, text, font, condition, seed)
            sample.part, sample.name = part, f"{part}-{n:02d}-{condition}-{Path(font).stem}"
            yield sample


def _sk(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise SetError("scikit-image is not installed: `make setup` installs it") from None
    image = np.asarray(getattr(data, name)())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=2)
    return image[:, :, :3].astype(np.uint8)


def photos() -> Iterator[Sample]:
    sys.path.insert(0, str(REPO / "tools"))
    from eyes_demo_images import DEMO, OUT

    from pendant.eyes.images import fit, load_image

    for name, lines in DEMO.items():
        yield Sample("photos", name, fit(load_image(OUT / name), WIDTH, HEIGHT), lines)
    yield Sample("photos", "skimage-page", fit(_sk("page"), WIDTH, HEIGHT), PAGE_LINES)


def no_text() -> Iterator[Sample]:
    from pendant.eyes.images import fit

    for name in NO_TEXT:
        yield Sample("notext", f"skimage-{name}", fit(_sk(name), WIDTH, HEIGHT), [])
    # A blank card under glare: the lighting alone must not read as text.
    blank = _light(
        np.asarray(_background(np.random.default_rng(SEED))), np.random.default_rng(SEED), 0.9
    )
    yield Sample("notext", "glare-blank", blank, [])


PARTS = ("tune", "heldout", "photos", "notext")


def samples(parts: tuple[str, ...] = PARTS) -> Iterator[Sample]:
    for part in parts:
        if part in ("tune", "heldout"):
            yield from rendered(part)
        elif part == "photos":
            yield from photos()
        else:
            yield from no_text()


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python tools/ocr_sets.py DIR", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "device"))
    try:
        for s in samples():
            Image.fromarray(s.frame).save(out / f"{s.name}.png")
    except SetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
