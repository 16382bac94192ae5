"""Digit crops -> MNIST-style 28x28 images, in pure numpy.

MNIST digits are white strokes on black, scaled so the longer side of the
digit's box is 20 px (anti-aliased), placed in a 28x28 field with their centre
of mass at the centre. :func:`to_mnist` does the same to any crop of a single
digit: grayscale or BGR(A), any size, dark ink on light paper or light on dark.

All functions here are pure (arrays in, arrays out) and thread-safe.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any

import numpy as np

from .layout import MNIST_SIZE, area_matrix, mnist_layout, mnist_ready

__all__ = [
    "check_image",
    "flatten_alpha",
    "ink_map",
    "optional_module",
    "to_gray",
    "to_mnist",
]

_WORK_SIDE = 128
_HAT_MIN = 0.1  # polarity vote: weakest hat response that counts, as a fraction of the range
_FINE_VOTE_SIDE = 64  # polarity vote: images this large (working pixels) also vote at 3 px
_MIN_STROKE_PX = 24  # fewest stroke pixels a digit has at the working size
_ZOOM_BELOW = 48  # a digit under this many working pixels in a shrunk photo gets a second look
_BGR_WEIGHTS = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def check_image(image: Any, what: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{what} must be a numpy array (h, w) or (h, w, c), not {type(image).__name__}")
    if image.dtype == np.bool_ or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise TypeError(f"{what} dtype {image.dtype} is not numeric; pass uint8 or float pixels")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"{what} has shape {image.shape}; expected (h, w) grayscale or (h, w, 1|3|4) "
            "BGR(A) — pass one image at a time, or a list to classify_batch"
        )
    if image.size == 0:
        raise ValueError(f"{what} is empty (shape {image.shape}); pass a crop with pixels")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise ValueError(f"{what} contains NaN or infinity; clean it first")
    return image


def flatten_alpha(image: np.ndarray) -> np.ndarray:
    """Removes an alpha channel, showing see-through parts against the paper the content needs.

    ``(h, w, 4)`` BGRA becomes ``(h, w, 3)`` BGR and ``(h, w, 2)`` gray + alpha becomes
    ``(h, w)`` gray, in the same dtype; other images are returned as they are. An
    opaque image just loses the channel. Otherwise the background is white under
    dark content (ink drawn on a transparent page, a common PNG export) and black
    under light content (white strokes made for a dark page), judged by the
    content's mean luma weighted by its opacity. Simply dropping the channel would
    show a transparent page's hidden colour, often black, under black ink. A fourth
    channel of zeros is taken for padding (a BGRX frame), as it is dropped too.

    >>> page = np.zeros((1, 2, 4), np.uint8); page[0, 0, 3] = 255  # one black pixel, one clear
    >>> flatten_alpha(page)[0].tolist()
    [[0, 0, 0], [255, 255, 255]]
    """
    if image.ndim != 3 or image.shape[2] not in (2, 4):
        return image
    colour, alpha = image[:, :, :-1], image[:, :, -1]
    gray = image.shape[2] == 2
    integer = np.issubdtype(image.dtype, np.integer)
    if integer:
        top = float(np.iinfo(image.dtype).max)
    else:  # float pixels: alpha in 0-1, or in 0-255 like the colours
        top = 1.0 if float(np.nanmax(alpha, initial=0.0)) <= 1.0 else 255.0
    if float(alpha.min()) >= top or not alpha.any():
        # opaque; or a fourth byte that is all zero: padding (BGRX), not a blank clear page
        return np.ascontiguousarray(colour[:, :, 0] if gray else colour)
    # In bands of about a million values: a 40 MP upload as float would be 480 MB.
    step = max(1, (1 << 20) // (image.shape[1] * image.shape[2]))
    bands = range(0, image.shape[0], step)

    def band(r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = np.clip(alpha[r : r + step].astype(np.float32) / top, 0.0, 1.0)
        c = colour[r : r + step].astype(np.float32)
        return a, c, (c[:, :, 0] if gray else c @ _BGR_WEIGHTS)

    content = weight = 0.0
    for r in bands:
        a, _, luma = band(r)
        content += float((luma * a).sum())
        weight += float(a.sum())
    paper = 0.0 if weight > 0 and content / weight > top / 2 else top
    out = np.empty(colour.shape, image.dtype)
    for r in bands:
        a, c, _ = band(r)
        laid = c * a[:, :, None] + paper * (1.0 - a[:, :, None])
        out[r : r + step] = np.rint(laid) if integer else laid
    return out[:, :, 0] if gray else out


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale float32 in the image's own units; BGR weighted as luma, BGRA first
    laid on its paper by :func:`flatten_alpha`.

    >>> to_gray(np.full((2, 2, 3), 200, np.uint8)).round(3).tolist()
    [[200.0, 200.0], [200.0, 200.0]]
    """
    image = check_image(image)
    if image.ndim == 2:
        return image.astype(np.float32, copy=False)
    if image.shape[2] == 1:
        return image[:, :, 0].astype(np.float32, copy=False)
    if image.shape[2] == 4:
        image = flatten_alpha(image)
    return image.astype(np.float32, copy=False) @ _BGR_WEIGHTS


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear interpolation), from a sort of the values.

    ``np.percentile`` and ``np.median`` carry a call overhead that dominates on a crop's
    few thousand values; a sort and the same interpolation give the same number."""
    a = np.sort(values, axis=None)
    pos = q / 100.0 * (a.size - 1)
    lo = int(pos)
    hi = min(lo + 1, a.size - 1)
    t = pos - lo
    x, y = a[lo], a[hi]  # numpy scalars: the interpolation runs in the values' own precision
    return float(x + (y - x) * t if t < 0.5 else y - (y - x) * (1.0 - t))


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1] (256 bins)."""
    hist = np.bincount(np.clip((values * 255).astype(np.int32), 0, 255).ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    levels = np.arange(256, dtype=np.float64)
    w0 = np.cumsum(hist)
    m0 = np.cumsum(hist * levels)
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (m0[-1] * w0 - total * m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return float(np.argmax(between)) / 255.0


@functools.cache
def optional_module(name: str) -> Any:
    """The module ``name`` if it is installed, else None; looked up once per process.

    OpenCV is optional for preprocessing: with it, morphology is faster and specks
    are dropped; without it, the numpy paths run. Either way the answer is decided
    once, not per crop (a failed import searches the file system every time).
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _rank_filter(a: np.ndarray, k: int, op: Any) -> np.ndarray:
    """k x k max or min filter (``op`` is np.maximum or np.minimum), edges replicated.

    Uses OpenCV's dilate/erode when OpenCV is installed (same result, faster);
    otherwise a separable numpy version.
    """
    cv2 = optional_module("cv2")
    if cv2 is not None:
        kernel = np.ones((k, k), np.uint8)
        f = cv2.dilate if op is np.maximum else cv2.erode
        return f(np.ascontiguousarray(a, np.float32), kernel, borderType=cv2.BORDER_REPLICATE)
    r = k // 2
    for axis in (0, 1):
        p = np.pad(a, [(r, r) if ax == axis else (0, 0) for ax in (0, 1)], mode="edge")
        n = a.shape[axis]
        views = [p[i : i + n] if axis == 0 else p[:, i : i + n] for i in range(k)]
        a = op.reduce(views)
    return a


def _clean_components(mask: np.ndarray, ink: np.ndarray) -> np.ndarray:
    """Keeps the digit's components; drops specks and shapes lying along the border.

    Table edges, paper edges and shadows that run along a side of the image are
    not the digit; a digit in a tight crop touches a side only over a stroke's
    width. Nor are lines that cross the crop from side to side (ruled paper under
    a digit), nor a box drawn around it. Needs OpenCV; without it the ink is
    returned unchanged.
    """
    cv2 = optional_module("cv2")
    if cv2 is None:
        return ink
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return ink
    h, w = mask.shape
    contact = np.zeros(n, np.float64)
    for side, length in ((labels[0], w), (labels[-1], w), (labels[:, 0], h), (labels[:, -1], h)):
        contact = np.maximum(contact, np.bincount(side, minlength=n) / length)
    x, y, bw, bh, area = (stats[1:, i].astype(np.float64) for i in range(5))
    along_border = contact[1:] > 0.3
    # a ruled line, a table's or a box's edge: from one side to the opposite one, and
    # thin across (a "1" or a "7" in a tight crop spans the crop both ways)
    across = ((x <= 0) & (x + bw >= w) & (bh < 0.25 * h)) | ((y <= 0) & (y + bh >= h) & (bw < 0.25 * w))
    along_border |= across
    # a box drawn around the digit (a form's field): a sparse outline with a sizeable
    # mark inside it; a 0's hole holds no ink, so a 0 is never taken for a box
    inside = (
        (x[None, :] > x[:, None])
        & (y[None, :] > y[:, None])
        & (x[None, :] + bw[None, :] < x[:, None] + bw[:, None])
        & (y[None, :] + bh[None, :] < y[:, None] + bh[:, None])
        & (area[None, :] >= 0.15 * area[:, None])
    )
    along_border |= inside.any(axis=1) & (area < 0.3 * bw * bh)
    centrality = 1.0 - np.hypot((y + bh / 2 - h / 2) / h, (x + bw / 2 - w / 2) / w)
    weight = area * centrality * np.where(along_border, 0.0, 1.0)
    if not weight.any():  # only border shapes: keep what there is
        weight = area
        along_border[:] = False
    main = int(np.argmax(weight))
    # the digit: the main component and the pieces near it (broken strokes)
    pad = 0.25 * max(bw[main], bh[main])
    near = (
        (x < x[main] + bw[main] + pad)
        & (x + bw > x[main] - pad)
        & (y < y[main] + bh[main] + pad)
        & (y + bh > y[main] - pad)
    )
    keep = near & (area >= 0.05 * area[main]) & ~along_border
    keep[main] = True
    # the faint rim of the kept strokes (anti-aliasing) stays; faint pixels elsewhere go
    kept = np.concatenate([[False], keep])[labels].astype(np.uint8)
    rim = cv2.dilate(kept, np.ones((3, 3), np.uint8), iterations=2)
    return np.where(rim > 0, ink, 0.0).astype(np.float32)


def _erase_ruled_lines(ink: np.ndarray, level: float) -> None:
    """Zeroes, in place, thin lines that run across a loose crop through or under the digit.

    A band of rows (or columns) full of ink from side to side, at most a few pixels
    thick, is a ruled line (or a margin line) when the rest of the ink, all such
    bands taken out, spans under 60% of the crop along it, or leaves a tenth of the
    crop free at both ends of a band inside the crop: the line runs on past the
    digit. A tight crop's own bars (the top of a 5 or a 7) end where the rest of the
    digit does, and stay, as does a band with less than half its ink again elsewhere
    (a thin 1's stem). Strokes crossing an erased line keep a gap of its width; the
    pieces are joined again as one digit. Ink is what reaches ``level``.
    """
    mask = ink >= level
    bands = []
    for axis in (0, 1):
        m = mask if axis == 0 else mask.T
        full = np.flatnonzero(m.sum(axis=1) >= 0.9 * m.shape[1])
        if full.size:
            bands += [(axis, b[0], b[-1] + 1) for b in np.split(full, np.flatnonzero(np.diff(full) > 1) + 1)]
    # thin, and long enough to be told from a stroke (in a 15x10 crop of a 1, its foot is a "line")
    bands = [b for b in bands if b[2] - b[1] <= max(2, int(0.08 * ink.shape[b[0]])) and ink.shape[1 - b[0]] >= 24]
    if not bands:
        return
    rest = mask.copy()
    for axis, a, b in bands:
        (rest if axis == 0 else rest.T)[a:b] = False
    left = int(rest.sum())
    for axis, a, b in bands:
        if 2 * left < int((mask if axis == 0 else mask.T)[a:b].sum()):
            continue  # the band is most of the ink: a tight crop's stroke (the stem of a thin 1)
        along = ink.shape[1 - axis]
        on = np.flatnonzero(rest.any(axis=axis))  # where the rest of the ink lies along the line
        narrow = on[-1] - on[0] + 1 < 0.6 * along
        inner = a > 0 and b < ink.shape[axis]  # not the crop's edge, where a tight crop's foot serif lies
        if narrow or (inner and min(on[0], along - 1 - on[-1]) >= 0.1 * along):
            (ink if axis == 0 else ink.T)[a:b] = 0.0


def _ink_is_dark(g: np.ndarray) -> bool:
    """Polarity of a crop scaled to [0, 1]: True for dark ink on light paper.

    The border is mostly paper, even in a tight crop (ink touches it at a few places):
    when three of its four sides sit clearly on one side of the crop's range, that
    side is paper. Otherwise (a dark table along two edges, a crop cut through its
    strokes) strokes are thin:
    at a scale a little wider than a stroke, the right polarity's hat transform
    (black-hat for dark ink) holds more strong contrast. Only responses over a tenth
    of the range count: strokes give strong ones, while sensor noise and a page's
    edge give weak ones all over a photo, which summed would outweigh a small digit.
    """
    h, w = g.shape
    sides = [_percentile(side, 50.0) for side in (g[0], g[-1], g[:, 0], g[:, -1])]
    if sum(b >= 0.65 for b in sides) >= 3:
        return True
    if sum(b <= 0.35 for b in sides) >= 3:
        return False
    kp = max(5, int(round(min(h, w) * 0.1)) | 1)
    vote = 0.0
    # In a large image a tenth of its side is wider than the holes of a small digit
    # (the inside of a 0 then looks like a light stroke): a 3 px scale votes too.
    for k in (3, kp) if min(h, w) >= _FINE_VOTE_SIDE else (kp,):
        black_hat = _rank_filter(_rank_filter(g, k, np.maximum), k, np.minimum) - g
        top_hat = g - _rank_filter(_rank_filter(g, k, np.minimum), k, np.maximum)
        vote += float(black_hat[black_hat > _HAT_MIN].sum()) - float(top_hat[top_hat > _HAT_MIN].sum())
    return vote >= 0.0


def ink_map(image: np.ndarray, *, invert: bool | None = None) -> np.ndarray:
    """Ink strength in [0, 1] (1 = stroke) for a crop or photo of one digit.

    Paper and lighting are estimated by a grey-scale morphological closing (or
    opening, for light ink) much wider than a pen stroke: it keeps gradients,
    shadows and dark surroundings but not strokes. Ink is the stroke's darkness
    relative to that background, so uneven light and shadows cancel out. Polarity
    comes from the border (mostly paper even in a tight crop) or, when that is
    unclear, from which thin structures hold more contrast (black-hat against
    top-hat at a tenth of the image's side, and at 3 px in larger images). Pixels
    below Otsu's threshold are zeroed, and thin lines across a loose crop erased;
    with OpenCV installed, specks, shapes hugging the border, lines from side to
    side and a box drawn around the digit are dropped.

    Args:
        image: Grayscale or BGR(A) crop, any numeric dtype.
        invert: Force polarity: True for dark ink on light paper, False for light
            ink on dark; None to decide from the image.

    Returns:
        float32 array in [0, 1]: (h, w), or reduced by an integer factor so the
        longer side is at most 128 px (the digit ends up 20 px tall anyway).
    """
    return _ink_map(image, invert)[0]


def _work_factor(image: np.ndarray) -> int:
    """The whole factor by which :func:`ink_map` shrinks ``image`` to at most 128 px a side."""
    return max(1, int(np.ceil(max(image.shape[:2]) / _WORK_SIDE)))


def _ink_map(image: np.ndarray, invert: bool | None) -> tuple[np.ndarray, bool]:
    """:func:`ink_map`, and the polarity it used (True: dark ink)."""
    H, W = image.shape[:2]
    f = _work_factor(image)
    if f > 1:  # the digit ends up 20 px tall: finer detail than this only costs time
        g = _gray_area(image, (max(1, H // f), max(1, W // f)))
    else:
        g = to_gray(image)
    h, w = g.shape
    lo, hi = float(g.min()), float(g.max())
    if hi - lo <= 1e-6 * max(1.0, abs(hi)):
        return np.zeros((h, w), np.float32), invert is not False
    g = (g - lo) / (hi - lo)
    if invert is None:
        invert = _ink_is_dark(g)
    # Wider than any stroke: a tight crop of a bold digit has strokes a third of its width.
    k = max(3, int(round(max(h, w) * 0.3)) | 1)
    if invert:
        bg = _rank_filter(_rank_filter(g, k, np.maximum), k, np.minimum)
    else:
        bg = _rank_filter(_rank_filter(g, k, np.minimum), k, np.maximum)
    if invert:
        ink = (bg - g) / np.maximum(bg, 0.1)
    else:
        ink = (g - bg) / np.maximum(1.0 - bg, 0.1)
    ink = np.clip(ink, 0.0, None)
    top = _percentile(ink, 99.5) if ink.size > 200 else float(ink.max())
    if top <= 0.08 and ink.size > 200:
        # under half a percent of the pixels: a small digit on a clean page (a drawing,
        # a scan). Its strongest couple of dozen pixels set the level instead.
        top = float(np.partition(ink.ravel(), ink.size - _MIN_STROKE_PX)[ink.size - _MIN_STROKE_PX])
    if top <= 0.08:  # no stroke stands out from the paper: nothing to read
        return np.zeros((h, w), np.float32), invert
    ink = np.clip(ink / top, 0.0, 1.0)
    t = max(_otsu(ink), 0.15)
    ink[ink < t * 0.5] = 0.0
    _erase_ruled_lines(ink, t)
    ink = _clean_components(ink >= t, ink)
    # Stretch so the stroke's core is full ink, like MNIST's saturated centres.
    core = ink[ink >= t]
    if core.size:
        top = _percentile(core, 60.0)
        if top > 0:
            ink = np.clip(ink / top, 0.0, 1.0)
    return ink.astype(np.float32, copy=False), invert


def _gray_area(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``resize_area(to_gray(image), shape)`` a band of rows at a time.

    A 12 MP photo as float32 BGR is 145 MB; in bands of about a million values
    the full-size float image never exists (a Pi serving uploads keeps its memory).
    """
    if image.ndim == 3 and image.shape[2] == 4:
        image = flatten_alpha(image)  # its paper is chosen from the whole image, not per band
    rows = area_matrix(image.shape[0], shape[0])
    per_row = image.shape[1] * (image.shape[2] if image.ndim == 3 else 1)
    step = max(1, (1 << 20) // per_row)
    acc = np.zeros((shape[0], image.shape[1]), np.float32)
    for r in range(0, image.shape[0], step):
        acc += rows[:, r : r + step] @ to_gray(image[r : r + step])
    return acc @ area_matrix(image.shape[1], shape[1]).T


def to_mnist(image: np.ndarray, *, invert: bool | None = None) -> np.ndarray:
    """Normalises a crop of one digit the MNIST way.

    A ``(28, 28)`` uint8 array with dark corners is taken to be MNIST-normalised
    already and is returned unchanged; anything else (a 28x28 dark digit on white,
    as a drawing program saves it, included) goes through :func:`ink_map` (polarity,
    background, threshold, lines and boxes), tight box, longest side to 20 px and
    centring by mass. A digit found small in a large photo is mapped again from the
    full-size pixels around it.

    Args:
        image: Grayscale ``(h, w)`` or BGR(A) ``(h, w, 3|4)`` crop of one digit.
        invert: See :func:`ink_map`.

    Returns:
        uint8 array (28, 28), white digit on black.

    Raises:
        TypeError: Not a numeric numpy array.
        ValueError: Wrong rank or channel count, empty, or NaN/inf.

    >>> crop = np.full((60, 40), 230, np.uint8); crop[10:50, 18:23] = 20  # a dark "1"
    >>> out = to_mnist(crop)
    >>> out.shape, out.dtype, int(out[4:24, 12:16].max()) > 200, int(out[:, :8].max())
    ((28, 28), dtype('uint8'), True, 0)
    """
    image = check_image(image)
    if image.shape == (MNIST_SIZE, MNIST_SIZE) and image.dtype == np.uint8 and invert is None and mnist_ready(image):
        return image
    ink, dark = _ink_map(image, invert)
    return mnist_layout(_second_look(image, ink, dark))


def _second_look(image: np.ndarray, ink: np.ndarray, dark: bool) -> np.ndarray:
    """A small digit in a large photo, found at the shrunk working size, read again at full detail.

    The first look shrinks a photo to 128 px: a digit a tenth of the photo tall is
    then a dozen pixels, its strokes a pixel or less. When the ink found is that
    small, the region around it (half the digit's size on each side: paper for the
    background estimate) is mapped again from the full-size image, with the polarity
    already decided. Otherwise, or when the second look finds no ink, ``ink`` stands.
    """
    f = _work_factor(image)  # the first look's
    mask = ink > 0.25
    if f <= 1 or not mask.any():
        return ink
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    bh, bw = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    if max(bh, bw) >= _ZOOM_BELOW:
        return ink
    pad = max(bh, bw) // 2 + 1
    y0, y1 = max(0, (rows[0] - pad) * f), min(image.shape[0], (rows[-1] + 1 + pad) * f)
    x0, x1 = max(0, (cols[0] - pad) * f), min(image.shape[1], (cols[-1] + 1 + pad) * f)
    closer, _ = _ink_map(image[y0:y1, x0:x1], dark)
    return closer if (closer > 0.25).any() else ink
