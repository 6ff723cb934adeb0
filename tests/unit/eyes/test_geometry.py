"""OCR's image geometry in numpy (`pendant.eyes.geometry`) against OpenCV's, which it replaces
in the eyes' reader (OpenCV stays a dependency of the detectors, so the tests can ask it)."""

from __future__ import annotations

import numpy as np
import pytest

from pendant.eyes import geometry

cv2 = pytest.importorskip("cv2")
RNG = np.random.default_rng(17)


@pytest.mark.parametrize(("width", "height"), [(512, 384), (320, 48), (900, 700), (37, 11)])
def test_resize_is_opencvs_bilinear(width: int, height: int) -> None:
    image = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    ours = geometry.resize(image, width, height).astype(int)
    theirs = cv2.resize(image, (width, height)).astype(int)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1  # OpenCV rounds in fixed point


def test_dilate2_is_opencvs_2x2_dilation() -> None:
    bitmap = (RNG.random((60, 80)) > 0.9).astype(np.uint8)
    theirs = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    assert np.array_equal(geometry.dilate2(bitmap), theirs)


def _blobs() -> np.ndarray:
    bitmap = np.zeros((120, 200), dtype=np.uint8)
    cv2.fillPoly(bitmap, [np.array([[10, 10], [90, 20], [85, 40], [8, 30]])], 1)  # a tilted line
    cv2.rectangle(bitmap, (120, 60), (190, 75), 1, -1)  # a level one
    bitmap[100, 20:30] = 1  # one row only
    bitmap[95:99, 150] = 1  # one column
    bitmap[110, 100] = 1  # one pixel
    bitmap[[80, 81], [60, 61]] = 1  # touching only at a corner: one region
    return bitmap


def test_regions_are_the_8_connected_ones_with_opencvs_rectangles() -> None:
    bitmap = _blobs()
    ours = geometry.regions(bitmap)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    assert len(ours) == len(contours) == 6

    def rect(points: np.ndarray) -> tuple[float, float]:
        corners, short = geometry.min_area_rect(points)
        sides = np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1)
        return round(float(sides.max() * sides.min()), 1), round(short, 2)

    theirs = sorted(
        (round(float(np.prod(cv2.minAreaRect(c)[1])), 1), round(min(cv2.minAreaRect(c)[1]), 2))
        for c in contours
    )
    for (area, short), (their_area, their_short) in zip(
        sorted(rect(r) for r in ours), theirs, strict=True
    ):
        assert area == pytest.approx(their_area, abs=0.5)
        assert short == pytest.approx(their_short, abs=0.05)


def test_inside_is_opencvs_filled_quadrilateral_give_or_take_its_edge() -> None:
    box = np.array([[2, 3], [40, 8], [38, 20], [1, 15]], dtype=np.float32)
    theirs = np.zeros((24, 44), dtype=np.uint8)
    cv2.fillPoly(theirs, [box.astype(np.int32)], 1)
    ours = geometry.inside(box, 24, 44)
    assert (ours != theirs).sum() <= 0.05 * theirs.sum()


def test_a_perspective_crop_is_opencvs() -> None:
    image = cv2.GaussianBlur(RNG.integers(0, 256, (120, 160, 3), dtype=np.uint8), (5, 5), 0)
    box = np.array([[20, 30], [130, 25], [135, 70], [18, 80]], dtype=np.float32)
    target = np.array([[0, 0], [110, 0], [110, 45], [0, 45]], dtype=np.float32)
    matrix = geometry.perspective(box, target)
    assert np.allclose(matrix, cv2.getPerspectiveTransform(box, target), atol=1e-6)
    theirs = cv2.warpPerspective(
        image, matrix, (110, 45), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    ).astype(int)
    ours = geometry.warp(image, matrix, 110, 45).astype(int)
    assert np.abs(ours - theirs).max() <= 2
