"""The image geometry OCR needs, in numpy: what OpenCV did for it, without OpenCV's 27 MB in the
eyes' reader.

Bilinear resizing and bicubic perspective crops as OpenCV computes them (pixel centres at +0.5,
edges replicated, Keys' cubic with a = -0.75), a 2x2 dilation, the 8-connected regions of a
bitmap, and the smallest rotated rectangle around a set of points (convex hull, then one
rectangle per hull edge).
"""

from __future__ import annotations

import numpy as np

CUBIC_A = -0.75


def _axis(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: the lower index, the upper, and the upper's weight."""
    x = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    x = np.clip(x, 0, size_in - 1)
    lo = np.floor(x).astype(np.intp)
    hi = np.minimum(lo + 1, size_in - 1)
    return lo, hi, (x - lo).astype(np.float32)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` (H x W or H x W x C, uint8) scaled to width x height, bilinear."""
    y0, y1, wy = _axis(image.shape[0], height)
    x0, x1, wx = _axis(image.shape[1], width)
    src = image.astype(np.float32)
    extra = (None,) * (image.ndim - 2)
    wx = wx[(None, slice(None), *extra)]
    wy = wy[(slice(None), None, *extra)]
    top = src[y0][:, x0] * (1 - wx) + src[y0][:, x1] * wx
    bottom = src[y1][:, x0] * (1 - wx) + src[y1][:, x1] * wx
    out = top * (1 - wy) + bottom * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def dilate2(bitmap: np.ndarray) -> np.ndarray:
    """A 0/1 bitmap dilated by a 2x2 square whose anchor is its lower right pixel."""
    out = bitmap.copy()
    out[1:] |= bitmap[:-1]
    out[:, 1:] |= bitmap[:, :-1]
    out[1:, 1:] |= bitmap[:-1, :-1]
    return out


def regions(bitmap: np.ndarray) -> list[np.ndarray]:
    """The 8-connected regions of a 0/1 bitmap, each as the end pixels (x, y) of its runs along
    the rows: enough for its convex hull. Top to bottom by first row."""
    runs: list[tuple[int, int, int]] = []  # (row, first x, last x)
    padded = np.zeros((bitmap.shape[0], bitmap.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = bitmap != 0
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    # Each row's changes alternate: a run starts (0 -> 1), then ends (1 -> 0).
    for k in range(0, len(rows), 2):
        runs.append((int(rows[k]), int(cols[k]), int(cols[k + 1]) - 1))
    parent = list(range(len(runs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    previous: list[int] = []
    current: list[int] = []
    row = -2
    for i, (r, first, last) in enumerate(runs):
        if r != row:
            previous = current if r == row + 1 else []
            current, row = [], r
        for j in previous:
            _, pfirst, plast = runs[j]
            if pfirst <= last + 1 and plast >= first - 1:  # touching, diagonals too
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
        current.append(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(runs)):
        groups.setdefault(find(i), []).append(i)
    out = []
    for members in groups.values():
        points = []
        for i in members:
            r, first, last = runs[i]
            points += [(first, r), (last, r)]
        out.append(np.array(points, dtype=np.float32))
    return out


def _hull(points: np.ndarray) -> np.ndarray:
    """The convex hull of `points` (N x 2), counter-clockwise, without collinear points."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return np.array(pts, dtype=np.float64).reshape(-1, 2)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        chain: list[tuple[float, float]] = []
        for p in seq:
            while len(chain) >= 2:
                (ax, ay), (bx, by) = chain[-2], chain[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float]:
    """The smallest rotated rectangle around `points` (N x 2): its four corners (4 x 2, float32,
    in no set order) and its short side."""
    hull = _hull(points)
    if len(hull) < 3:  # a point or a segment: a rectangle with no width
        ends = np.vstack([hull[:1], hull[-1:]])
        return np.vstack([ends, ends[::-1]]).astype(np.float32), 0.0
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    best: tuple[float, np.ndarray, float] | None = None
    for angle in angles:
        c, s = np.cos(angle), np.sin(angle)
        rot = hull @ np.array([[c, -s], [s, c]])  # into the edge's frame
        lo, hi = rot.min(axis=0), rot.max(axis=0)
        area = float(np.prod(hi - lo))
        if best is None or area < best[0]:
            box = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
            best = (area, box @ np.array([[c, s], [-s, c]]), float(min(hi - lo)))
    assert best is not None
    return best[1].astype(np.float32), best[2]


def inside(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """A height x width 0/1 mask of the pixels whose centres lie in the convex quadrilateral
    `box` (pixel coordinates), its edges included."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.ones((height, width), dtype=bool)
    area2 = sum(
        float(box[k][0] * box[(k + 1) % 4][1] - box[(k + 1) % 4][0] * box[k][1]) for k in range(4)
    )
    sign = 1.0 if area2 >= 0 else -1.0
    for k in range(4):
        (ax, ay), (bx, by) = box[k], box[(k + 1) % 4]
        cross = (bx - ax) * (yy - ay) - (by - ay) * (xx - ax)
        length = max(float(np.hypot(bx - ax, by - ay)), 1e-6)
        mask &= sign * cross >= -0.5 * length  # within half a pixel of the edge counts
    return mask.astype(np.uint8)


def perspective(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking the four points `src` to `dst`."""
    a, b = [], []
    for (x, y), (u, v) in zip(src.astype(np.float64), dst.astype(np.float64), strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        b.append(u)
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b.append(v)
    h = np.linalg.solve(np.array(a), np.array(b))
    return np.append(h, 1.0).reshape(3, 3)


def _cubic(t: np.ndarray) -> np.ndarray:
    """Keys' cubic weights of the four taps at -1, 0, 1, 2 for offsets `t` in [0, 1)."""
    a = CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return np.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=-1)


def warp(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` (H x W x C, uint8) seen through the homography `matrix` (source to output) into
    width x height, bicubic, the source's edges replicated beyond it."""
    inverse = np.linalg.inv(matrix)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    grid = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    sx, sy, sw = inverse @ grid
    sw = np.where(sw == 0, 1e-12, sw)
    sx, sy = sx / sw, sy / sw
    x0, y0 = np.floor(sx), np.floor(sy)
    wx, wy = _cubic(sx - x0), _cubic(sy - y0)
    h, w = image.shape[:2]
    xs = np.clip(x0[:, None].astype(np.intp) + np.arange(-1, 3), 0, w - 1)
    ys = np.clip(y0[:, None].astype(np.intp) + np.arange(-1, 3), 0, h - 1)
    src = image.astype(np.float32)
    out = np.zeros((xx.size, image.shape[2]), dtype=np.float32)
    for j in range(4):
        row = np.zeros_like(out)
        for i in range(4):
            row += src[ys[:, j], xs[:, i]] * wx[:, i, None]
        out += row * wy[:, j, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(height, width, -1)
