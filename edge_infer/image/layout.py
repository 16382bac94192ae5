"""The MNIST layout: an ink map -> a 28x28 white-on-black digit, longest side 20 px, centred by mass.

One set of rules, used by :func:`edge_infer.image.preprocess.to_mnist` (crops and
photos), the full detection pipeline and the fast one:

1. tight box of the ink above :data:`INK_LEVEL`;
2. longest side to :data:`MNIST_BOX` px (area filter down, linear up);
3. the stroke width (ink area over half its boundary, :func:`stroke_width`) brought
   into MNIST's range: under :data:`THIN_STROKE` px a 3x3 max thickens it (a fine pen
   or a thin font seen large), over :data:`BOLD_STROKE` px a 2x2 min thins it (bold
   print, a marker: a bold "1" with a foot otherwise reads as "2");
4. the peak to 255, the centre of mass to the centre of the 28x28 field.

The primitives (box, resize, max and min filters, centre of mass) come in two sets
with the same results to a grey level: :data:`NUMPY` (pure numpy, for a runtime
without OpenCV) and :data:`OPENCV` (about 10x faster per crop, for frames).

All functions are pure and thread-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = [
    "BOLD_STROKE",
    "INK_LEVEL",
    "MNIST_BOX",
    "MNIST_SIZE",
    "NUMPY",
    "OPENCV",
    "STROKE_LEVEL",
    "THIN_STROKE",
    "LayoutOps",
    "area_matrix",
    "center_of_mass_place",
    "mnist_layout",
    "mnist_ready",
    "paper_rows",
    "resize_area",
    "stroke_width",
]

MNIST_SIZE = 28
MNIST_BOX = 20
INK_LEVEL = 0.25  # ink (1 = stroke core) that counts for the tight box
STROKE_LEVEL = 0.4  # ink that counts for the stroke-width estimate, at 20 px scale
THIN_STROKE = 1.5  # strokes thinner than this (px at 20 px scale) are thickened by one
BOLD_STROKE = 3.5  # strokes thicker than this are thinned by one (with thin_bold)
_LAST = MNIST_SIZE * MNIST_SIZE - 1


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling weights: box (area) filter down, linear up."""
    if n_out >= n_in:
        pos = (np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        i0 = np.floor(pos).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        f = pos - i0
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), i0] += 1 - f
        m[np.arange(n_out), i1] += f
        return m.astype(np.float32)
    edges = np.arange(n_out + 1, dtype=np.float64) * n_in / n_out
    lo, hi = edges[:-1, None], edges[1:, None]
    px = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resizes a 2-D float image with area averaging (down) or linear (up) filtering.

    >>> resize_area(np.ones((40, 20), np.float32), (20, 10)).shape
    (20, 10)
    """
    h, w = shape
    return area_matrix(image.shape[0], h) @ image.astype(np.float32, copy=False) @ area_matrix(image.shape[1], w).T


def center_of_mass_place(
    digit: np.ndarray,
    size: int = MNIST_SIZE,
    *,
    centre: tuple[float, float] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Places a small image in a ``size`` x ``size`` field, centre of mass at the centre.

    Pixels shifted past the edge are dropped (as MNIST's own centring does).
    ``centre`` is the image's centre of mass ``(cy, cx)`` when the caller already has
    it (OpenCV's moments); otherwise it is computed here. The field is a new float32
    array of zeros, or ``out`` (zeros, any dtype), which is written and returned.

    >>> center_of_mass_place(np.ones((2, 2), np.float32), 4).astype(int).tolist()
    [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    if out is None:
        out = np.zeros((size, size), np.float32)
    h, w = digit.shape
    if centre is None:
        total = float(digit.sum())
        if total <= 0:
            return out
        centre = (
            float((digit.sum(axis=1) * np.arange(h)).sum()) / total,
            float((digit.sum(axis=0) * np.arange(w)).sum()) / total,
        )
    top = int(round((size - 1) / 2 - centre[0]))
    left = int(round((size - 1) / 2 - centre[1]))
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, size), min(left + w, size)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = digit[y0 - top : y1 - top, x0 - left : x1 - left]
    return out


def stroke_width(small: np.ndarray) -> float:
    """Mean stroke width of a small ink map: ink area over half its boundary length (0 for no ink).

    The image's outside counts as background, so ink on the edge has a boundary there.

    >>> bar = np.zeros((20, 20), np.float32); bar[2:18, 8:11] = 1.0   # a 3 px wide "1"
    >>> round(stroke_width(bar), 2)
    2.53
    """
    m = small > STROKE_LEVEL
    area = int(np.count_nonzero(m))
    if not area:
        return 0.0
    edges = (
        int(np.count_nonzero(m[1:] != m[:-1]) + np.count_nonzero(m[:, 1:] != m[:, :-1]))
        + int(np.count_nonzero(m[0]) + np.count_nonzero(m[-1]))
        + int(np.count_nonzero(m[:, 0]) + np.count_nonzero(m[:, -1]))
    )
    return 2.0 * area / edges


@dataclass(frozen=True)
class LayoutOps:
    """The image primitives :func:`mnist_layout` is built from (see :data:`NUMPY`, :data:`OPENCV`).

    Attributes:
        box: ink map -> ``(x, y, w, h)`` of the pixels above :data:`INK_LEVEL` (w = 0: none).
        resize: ``(image, (h, w))`` -> float32 resized (area filter down, linear up).
        thicken: 3x3 max filter of the image with a one-pixel border of zeros added.
        thin: 2x2 min filter (the pixel and its upper-left neighbours, edges ignored).
        centre: centre of mass ``(cy, cx)`` of a non-empty image.
    """

    box: Callable[[np.ndarray], tuple[int, int, int, int]]
    resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    thicken: Callable[[np.ndarray], np.ndarray]
    thin: Callable[[np.ndarray], np.ndarray]
    centre: Callable[[np.ndarray], tuple[float, float]]


def _np_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    mask = ink > INK_LEVEL
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _np_thicken(small: np.ndarray) -> np.ndarray:
    p = np.pad(small, 2)
    h, w = small.shape[0] + 2, small.shape[1] + 2
    return np.max([p[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)


def _np_thin(small: np.ndarray) -> np.ndarray:
    p = np.pad(small, ((1, 0), (1, 0)), mode="edge")
    return np.minimum(np.minimum(p[:-1, :-1], p[1:, :-1]), np.minimum(p[:-1, 1:], p[1:, 1:]))


def _np_centre(small: np.ndarray) -> tuple[float, float]:
    total = float(small.sum())
    h, w = small.shape
    return (
        float((small.sum(axis=1) * np.arange(h)).sum()) / total,
        float((small.sum(axis=0) * np.arange(w)).sum()) / total,
    )


#: Pure-numpy primitives: what :func:`~edge_infer.image.preprocess.to_mnist` uses, OpenCV or not.
NUMPY = LayoutOps(box=_np_box, resize=resize_area, thicken=_np_thicken, thin=_np_thin, centre=_np_centre)

_K3 = np.ones((3, 3), np.uint8)
_K2 = np.ones((2, 2), np.uint8)


def _cv_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    import cv2

    # 8-bit ink: any level above zero is over INK_LEVEL, and OpenCV boxes nonzero pixels itself
    x, y, w, h = cv2.boundingRect(ink if ink.dtype == np.uint8 else (ink > INK_LEVEL).view(np.uint8))
    return (x, y, w, h)


def _cv_resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = shape
    up = w > image.shape[1] or h > image.shape[0]
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR if up else cv2.INTER_AREA)


def _cv_thicken(small: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.dilate(cv2.copyMakeBorder(small, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), _K3)


def _cv_thin(small: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.erode(small, _K2)


def _cv_centre(small: np.ndarray) -> tuple[float, float]:
    import cv2

    mo = cv2.moments(small)
    return (mo["m01"] / mo["m00"], mo["m10"] / mo["m00"])


#: OpenCV primitives (about 10x faster per crop): the detection pipelines' choice.
OPENCV = LayoutOps(box=_cv_box, resize=_cv_resize, thicken=_cv_thicken, thin=_cv_thin, centre=_cv_centre)


def mnist_layout(
    ink: np.ndarray,
    *,
    ops: LayoutOps = NUMPY,
    thin_bold: bool = True,
    stroke_rule: bool = True,
    peak_to_white: bool = True,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Ink map (float32, 1 = stroke core, 0 = background) -> uint8 ``(28, 28)`` MNIST layout.

    Args:
        ink: 2-D float ink map.
        ops: The primitives: :data:`NUMPY` or :data:`OPENCV`.
        thin_bold: Thin strokes thicker than :data:`BOLD_STROKE` (step 3 of the module's rules).
        stroke_rule: Apply step 3 at all. The fast pipeline skips it (and ``thin_bold``).
        peak_to_white: Scale the resized digit so its peak is 255 (step 4). The fast pipeline
            passes uint8 ink already scaled to 255 before the resize, and skips it.
        out: A zeroed uint8 ``(28, 28)`` array to write into (one row of a batch).

    Returns:
        uint8 ``(28, 28)`` white digit on black (``out`` when given); all zeros for no ink.

    >>> ink = np.zeros((40, 30), np.float32); ink[5:35, 12:18] = 1.0   # a thick "1"
    >>> d = mnist_layout(ink); d.shape, int(d.max()), int(d[:, :10].max())
    ((28, 28), 255, 0)
    """
    if out is None:
        out = np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    x, y, w, h = ops.box(ink)
    if w == 0 or h == 0:
        return out
    crop = ink[y : y + h, x : x + w]
    scale = MNIST_BOX / max(h, w)
    small = ops.resize(crop, (max(1, round(h * scale)), max(1, round(w * scale))))
    if stroke_rule:
        width = stroke_width(small)
        if width and width < THIN_STROKE:
            small = ops.thicken(small)
        elif thin_bold and width > BOLD_STROKE:
            small = ops.thin(small)
    peak = float(small.max())
    if peak <= 0:
        return out
    if not peak_to_white and small.dtype == np.uint8:  # 8-bit levels as they are: straight into out
        return center_of_mass_place(small, MNIST_SIZE, centre=ops.centre(small), out=out)
    if peak_to_white:
        small = np.minimum(small * (255.0 / peak), 255.0)
    placed = center_of_mass_place(small, MNIST_SIZE, centre=ops.centre(small))
    np.rint(placed, out=placed)
    out[:] = placed
    return out


def mnist_ready(image: np.ndarray) -> bool:
    """A (28, 28) uint8 image is in MNIST's layout when its corners are dark.

    MNIST keeps four black pixels around every digit. Light top-left and bottom-right
    corners (together over 254) are paper: a dark digit on white, not yet normalised.
    Two scalar reads, as this runs on every ``classify`` call.
    """
    return image.item(0) + image.item(_LAST) <= 254


def paper_rows(raw: bytes) -> list[int]:
    """:func:`mnist_ready` for the bytes of a C-contiguous (N, 28, 28) uint8 batch.

    Returns the indices of the images that are not ready (usually none, found in two slices).
    """
    size = MNIST_SIZE * MNIST_SIZE
    first, last = raw[::size], raw[_LAST::size]
    if not first or max(first) + max(last) <= 254:
        return []
    return [i for i, (a, b) in enumerate(zip(first, last)) if a + b > 254]
