"""Camera frames -> digit boxes: segmentation, MNIST-style crops, one batch per frame.

The pipeline, per frame (OpenCV is imported on first use, not with the package):

1. **Gray and size.** One colour conversion; frames larger than ``max_side``
   are shrunk for segmentation and the boxes mapped back.
2. **Polarity.** Dark ink on light paper or light on dark (a board, a screen),
   decided by which side of the local median has more strong pixels.
3. **Flat light.** The paper's brightness is estimated by a morphological close
   (strokes filled in) at quarter size, then each pixel's ink contrast is
   ``(paper - pixel) / paper``: shadows, gradients and colour casts divide out.
4. **Ink mask.** A threshold above the noise of the contrast map, kept only
   where a component also has strong ink (hysteresis).
5. **Lines.** Components too big to be a digit (grids, rules, a page edge) have
   their long straight lines found (probabilistic Hough) and erased; a stroke cut
   by an erased line is bridged again, so a digit on a line stays whole.
6. **Candidates.** Components of digit size and shape; small fragments that sit
   above or below a bigger one (a detached bar, a broken stroke) are merged in.
7. **Crops.** Each candidate's own ink (other components masked out) goes
   through :func:`edge_infer.preprocess.normalize_ink`: tight box, longest side
   20 px, centred by mass in 28x28, white on black.
8. **One invoke** for all crops (:meth:`DigitRecognizer.classify_batch`), then
   rejection: a score threshold, and words - a run of tightly spaced marks that
   is mostly not digits (letters) is dropped whole.

:func:`read_numbers` groups the digits found into numbers along a text line.

Thread safety: the functions hold no state; they are as thread-safe as the
recogniser passed in (which is).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .preprocess import MNIST_BOX, MNIST_SIZE, center_of_mass_place

if TYPE_CHECKING:
    from .recognizer import Detection, DigitRecognizer

__all__ = ["Number", "detect", "group_numbers", "read_numbers"]


class _HasBox(Protocol):
    @property
    def box(self) -> tuple[int, int, int, int]: ...


_Boxed = TypeVar("_Boxed", bound=_HasBox)  # Detection or Number
_BG_SCALE = 4  # the paper-brightness estimate is made at 1/4 size


@dataclass(frozen=True)
class Number:
    """Digits on one text line read left to right as a number.

    Attributes:
        box: ``(x, y, w, h)`` around all its digits, in frame pixels.
        value: The digits as a string, e.g. ``"042"`` (leading zeros kept).
        digits: The detections, left to right.
        scores: Each digit's probability, left to right.
    """

    box: tuple[int, int, int, int]
    value: str
    digits: tuple[Detection, ...]
    scores: tuple[float, ...]


@dataclass(frozen=True)
class _Candidate:
    box: tuple[int, int, int, int]  # working-image pixels
    labels: tuple[int, ...]  # component labels that make it up


# --------------------------------------------------------------------------- checks


def _check_frame(frame: Any) -> np.ndarray:
    if frame is None or not isinstance(frame, np.ndarray):
        raise TypeError(
            f"frame must be a numpy array (h, w) or (h, w, 3|4) of uint8, not {type(frame).__name__}"
            + (" (did the camera return no frame?)" if frame is None else "")
        )
    if frame.ndim == 4:
        raise ValueError(f"frame has shape {frame.shape}: a batch of frames; pass one frame (h, w[, c]) at a time")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"frame has shape {frame.shape}; expected (h, w) gray or (h, w, 3|4) BGR(A)")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"frame dtype is {frame.dtype}; expected uint8 (0-255) as cameras and cv2.imread give "
            "(convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    return frame


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- segmentation


def _gray(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """One colour conversion, then a shrink for frames larger than ``max_side``."""
    import cv2

    if frame.ndim == 3 and frame.shape[2] == 3:
        g = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        g = cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    else:
        g = frame.reshape(frame.shape[:2])
    scale = min(1.0, max_side / max(g.shape))
    if scale < 1.0:
        size = (max(1, round(g.shape[1] * scale)), max(1, round(g.shape[0] * scale)))
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(g), scale


def _dark_ink(small: np.ndarray, polarity: str) -> bool:
    """True when the ink is darker than the paper (see the module docstring, step 2).

    Counts strong small dark features (black-hat) against strong small light ones
    (top-hat) at quarter size; smooth shadows and gradients give neither.
    """
    import cv2

    if polarity != "auto":
        return polarity == "dark"
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5))
    dark = np.count_nonzero(cv2.morphologyEx(small, cv2.MORPH_BLACKHAT, k) > 20)
    light = np.count_nonzero(cv2.morphologyEx(small, cv2.MORPH_TOPHAT, k) > 20)
    return bool(dark >= light)


def _contrast(gray: np.ndarray, close_px: int, polarity: str) -> np.ndarray:
    """Ink contrast 0-255: ``255 * (paper - pixel) / paper``, paper estimated by a close.

    Dark ink on light paper; a light-on-dark frame is inverted first.
    """
    import cv2

    h, w = gray.shape
    small = cv2.resize(gray, (max(1, w // _BG_SCALE), max(1, h // _BG_SCALE)), interpolation=cv2.INTER_AREA)
    if not _dark_ink(small, polarity):
        gray = cv2.bitwise_not(gray)
        small = cv2.bitwise_not(small)
    k = max(3, close_px // _BG_SCALE) | 1
    paper = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    paper = cv2.blur(paper, (3, 3))
    # Dark surroundings (a desk, a deep shadow) are not paper: dividing by their low
    # level would blow their noise up into "ink". Floor the divisor at 30% of the page.
    cdf = np.cumsum(np.bincount(paper.ravel(), minlength=256))
    floor = max(1, int(0.3 * int(np.searchsorted(cdf, 0.9 * cdf[-1]))))
    paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR)
    # The close can dip below a pixel's value at tile edges: take the max so contrast >= 0.
    paper = cv2.max(paper, gray)
    return cv2.divide(cv2.subtract(paper, gray), np.maximum(paper, np.uint8(floor)), scale=255)


def _thresholds(contrast: np.ndarray, min_contrast: float) -> tuple[int, int]:
    """Low (ink) and high (strong ink) thresholds on the contrast map, above its noise.

    The noise is the median absolute deviation of the contrast, which is mostly paper.
    """
    hist = np.bincount(contrast[::3, ::3].ravel(), minlength=256)
    cdf = np.cumsum(hist)
    med = int(np.searchsorted(cdf, cdf[-1] / 2))
    dev = np.bincount(np.abs(np.arange(256) - med), weights=hist, minlength=256)
    mad = int(np.searchsorted(np.cumsum(dev), cdf[-1] / 2))
    lo = int(max(255 * min_contrast, med + 7.0 * 1.4826 * mad + 6))
    # Strong ink: twice the low threshold (at least 30%), but in a dim frame (faint chalk,
    # pencil) no more than 70% of the frame's strongest ink.
    peak = int(np.searchsorted(cdf, 0.997 * cdf[-1]))
    hi = int(min(max(2 * lo, 255 * 0.3), 200, max(lo + 8, 0.7 * peak)))
    return lo, hi


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and boxes ``(n, 4)`` of ``(x, y, w, h)`` of the 8-connected components of a mask.

    Boxes come from the components' outer contours: much cheaper than OpenCV's
    per-pixel statistics. Ink areas are counted only for candidates.
    """
    import cv2

    n, labels = cv2.connectedComponents(mask, connectivity=8, ltype=cv2.CV_32S)
    stats = np.zeros((n, 4), np.int64)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is not None:
        for c, parent in zip(contours, hierarchy[0][:, 3]):
            if parent < 0:  # an outer boundary (holes have a parent)
                px, py = c[0, 0]
                stats[labels[py, px]] = cv2.boundingRect(c)
    return labels, stats


def _holes(roi: np.ndarray, min_area: int) -> int:
    """Number of enclosed background regions of at least ``min_area`` pixels in a binary ROI."""
    import cv2

    contours, hierarchy = cv2.findContours(roi, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return 0
    inner = hierarchy[0][:, 3] >= 0
    return sum(1 for c, h in zip(contours, inner) if h and cv2.contourArea(c) >= min_area)


def _structures(labels: np.ndarray, stats: np.ndarray, min_h: int, max_h: int) -> list[int]:
    """Labels of components that are not one mark but lines with things on them.

    A grid (three or more cells), a rule longer than a digit is wide, a frame- or
    page-spanning line: big (long side >= 3 min_h) and not digit-shaped.
    """
    H, W = labels.shape
    x, y, w, h = (stats[:, i] for i in range(4))
    long_side = np.maximum(w, h)
    maybe = long_side >= 3 * min_h
    maybe[0] = False
    out = []
    for i in np.flatnonzero(maybe):
        aspect = w[i] / h[i]
        if long_side[i] > max_h or aspect > 2.0 or aspect < 0.08:
            out.append(int(i))
            continue
        roi = (labels[y[i] : y[i] + h[i], x[i] : x[i] + w[i]] == i).astype(np.uint8)
        if _holes(roi, max(16, (min_h // 3) ** 2)) >= 3:
            out.append(int(i))
    return out


def _erase_lines(
    mask: np.ndarray, labels: np.ndarray, stats: np.ndarray, ids: list[int], min_h: int, max_h: int
) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """Erases long thin straight lines from the given components; returns the new mask.

    Lines are found by a probabilistic Hough transform on the thin parts of each
    component (strokes under ~11 px wide: rules and grids, not bold digits), longer
    than anything that may hang on them. Gaps (where a digit touches) are jumped.
    Dense grids (squared paper), where the transform misses lines, are also opened
    with long horizontal and vertical bars. A stroke cut by an erased line is
    bridged across it again.
    """
    import cv2

    lines = np.zeros_like(mask)  # segments from the transform
    bars = np.zeros_like(mask)  # pixels of long horizontal / vertical runs
    own = np.zeros_like(mask)  # the structures' own pixels: nothing else is erased
    found: list[tuple[float, float, float, float]] = []
    k11 = np.ones((11, 11), np.uint8)
    for i in ids:
        x, y, w, h = (int(v) for v in stats[i, :4])
        roi = np.where(labels[y : y + h, x : x + w] == i, np.uint8(255), np.uint8(0))
        cv2.bitwise_or(own[y : y + h, x : x + w], roi, dst=own[y : y + h, x : x + w])
        # Outside the ROI is background (the default border would keep edge lines "thick").
        thin = cv2.subtract(
            roi, cv2.morphologyEx(roi, cv2.MORPH_OPEN, k11, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        )
        thin_full = thin
        f = 2 if max(w, h) > 400 else 1  # very big structures: search at half size (4x fewer votes)
        if f > 1:
            thin = cv2.resize(thin, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        # Longer than what may hang on the line: a digit is at most the structure's
        # short side tall (a rule under a number) unless the structure is a grid. A line
        # across nearly all of a structure taller (wider) than any digit is a line too
        # (a margin line from the top of the frame to the bottom).
        length = max(2 * min_h, 0.5 * max(w, h), min(1.2 * min(w, h), 0.8 * max(w, h)))
        along_x = min(length, 0.9 * w) if 0.9 * w > max_h else length
        along_y = min(length, 0.9 * h) if 0.9 * h > max_h else length
        shortest = int(min(along_x, along_y)) // f
        gap = max(5, min_h // 2, int(length) // 20) // f
        lroi = lines[y : y + h, x : x + w]
        for _ in range(2):  # the probabilistic transform can miss a line: look again without those found
            segs = cv2.HoughLinesP(
                thin, 1, np.pi / 360, threshold=max(10, shortest // 2), minLineLength=shortest, maxLineGap=gap
            )
            if segs is None:
                break
            for x1, y1, x2, y2 in segs.reshape(-1, 4).astype(np.float64):
                n = float(np.hypot(x2 - x1, y2 - y1))
                if n * f < (along_x if abs(x2 - x1) >= abs(y2 - y1) else along_y):
                    continue
                # Run on past the found ends: the transform often stops short, and the
                # stub it leaves looks like a "1". Only the structure's own ink is erased,
                # so overshooting past its end is harmless.
                ext = max(gap, 0.1 * n) / max(1e-6, n)
                dx, dy = (x2 - x1) * ext, (y2 - y1) * ext
                p1, p2 = (round(x1 - dx), round(y1 - dy)), (round(x2 + dx), round(y2 + dy))
                cv2.line(thin, p1, p2, 0, 3)
                cv2.line(lroi, (p1[0] * f, p1[1] * f), (p2[0] * f, p2[1] * f), 255, 3)
                found.append((x + x1 * f, y + y1 * f, x + x2 * f, y + y2 * f))
        # Dense grids (squared paper) defeat the transform: also open with long
        # horizontal and vertical bars, a pixel of slack across for a slight tilt.
        hk = int(max(3 * min_h, min(along_x, 0.35 * w)))
        vk = int(max(3 * min_h, min(along_y, 0.35 * h)))
        mroi = bars[y : y + h, x : x + w]
        for k, across, size in ((hk, (3, 1), (hk, 1)), (vk, (1, 3), (1, vk))):
            if k < (w if size[1] == 1 else h):
                bar = cv2.getStructuringElement(cv2.MORPH_RECT, size)
                opened = cv2.morphologyEx(cv2.dilate(roi, np.ones(across, np.uint8)), cv2.MORPH_OPEN, bar)
                cv2.bitwise_or(mroi, cv2.bitwise_and(opened, thin_full), dst=mroi)
    if not (lines.any() or bars.any()):
        return mask, found
    # The drawn segments widened to 9 px take the whole width of a rule (thicker
    # rules give several parallel segments); the bars are exact, give them 1 px.
    lines = cv2.dilate(lines, np.ones((5, 5), np.uint8))
    lines = cv2.bitwise_and(cv2.bitwise_or(lines, cv2.dilate(bars, np.ones((3, 3), np.uint8))), own)
    out = cv2.bitwise_and(mask, cv2.bitwise_not(lines))
    # Bridge strokes cut by an erased line: a close of what is left, kept only on the line.
    bridged = cv2.morphologyEx(out, cv2.MORPH_CLOSE, np.ones((11, 11), np.uint8))
    return cv2.bitwise_or(out, cv2.bitwise_and(bridged, lines)), found


def _segment(
    contrast: np.ndarray, min_h: int, max_h: int, min_contrast: float
) -> tuple[np.ndarray, list[_Candidate], list[tuple[int, int, int, int]], int]:
    """Contrast map -> (labels, digit candidates, other marks, strong-ink level), in working pixels."""
    import cv2

    lo, hi = _thresholds(contrast, min_contrast)
    _, mask = cv2.threshold(contrast, lo - 1, 255, cv2.THRESH_BINARY)
    labels, stats = _components(mask)
    if np.count_nonzero(_dash_like(stats, min_h)) > 40 and lo < hi:
        # The threshold sits on faint rules (squared paper) that noise breaks into
        # dashes: raise it toward the strong ink, which the digits have.
        lo = (lo + hi) // 2
        _, mask = cv2.threshold(contrast, lo - 1, 255, cv2.THRESH_BINARY)
        labels, stats = _components(mask)
    ids = _structures(labels, stats, min_h, max_h)
    lines: list[tuple[float, float, float, float]] = []
    if ids:
        mask, lines = _erase_lines(mask, labels, stats, ids, min_h, max_h)
        labels, stats = _components(mask)
    dashes = _dash_lines(mask, labels, stats, min_h)
    if dashes:
        lines += dashes
        labels, stats = _components(mask)
    cands, marks = _candidates(stats, labels, min_h, max_h)
    cands = [c for c in cands if not _on_a_line(c.box, lines)]
    return labels, _drop_dashes(cands), marks, (lo + hi) // 2


def _dash_like(stats: np.ndarray, min_h: int) -> np.ndarray:
    """Per component: a thin short straight piece, like a dash of a broken rule."""
    w, h = stats[:, 2], stats[:, 3]
    long_side, short_side = np.maximum(w, h), np.minimum(w, h)
    thin = (long_side >= min_h // 2) & (short_side <= 0.3 * long_side) & (long_side <= 4 * min_h)
    thin[0] = False
    return thin


def _dash_lines(
    mask: np.ndarray, labels: np.ndarray, stats: np.ndarray, min_h: int
) -> list[tuple[float, float, float, float]]:
    """Finds and erases (in ``mask``, in place) rules that noise has broken into dashes.

    Faint rules (squared or ruled paper) often threshold into many short thin pieces,
    none big enough to be a structure, each like a "1" or a "-". When there are many,
    the transform looks for long lines through them, jumping gaps of two digit heights.
    """
    import cv2

    thin = _dash_like(stats, min_h)
    if np.count_nonzero(thin) < 12:
        return []
    pieces = np.where(thin[labels], np.uint8(255), np.uint8(0))
    H, W = mask.shape
    # At quarter size: the dashes become short solid runs, and the search stays cheap.
    small = cv2.resize(pieces, (max(1, W // 4), max(1, H // 4)), interpolation=cv2.INTER_AREA)
    length = int(0.3 * min(H, W)) // 4
    segs = cv2.HoughLinesP(
        small, 1, np.pi / 180, threshold=max(8, length // 3), minLineLength=length, maxLineGap=max(2, min_h // 2)
    )
    if segs is None:
        return []
    band = np.zeros_like(mask)
    found = []
    for x1, y1, x2, y2 in segs.reshape(-1, 4) * 4 + 2:
        cv2.line(band, (int(x1), int(y1)), (int(x2), int(y2)), 255, 9)
        found.append((float(x1), float(y1), float(x2), float(y2)))
    # Only the dashes themselves go: a digit the line passes through is not a dash.
    cv2.bitwise_and(mask, cv2.bitwise_not(cv2.bitwise_and(band, pieces)), dst=mask)
    return found


def _on_a_line(box: tuple[int, int, int, int], lines: list[tuple[float, float, float, float]]) -> bool:
    """A thin mark lying along an erased line is what the line transform left of it, not a "1"."""
    x, y, w, h = box
    if not lines or min(w, h) > 0.35 * max(w, h):
        return False
    cx, cy = x + w / 2, y + h / 2
    along = np.array([0.0, 1.0]) if h >= w else np.array([1.0, 0.0])
    for x1, y1, x2, y2 in lines:
        d = np.array([x2 - x1, y2 - y1])
        length = float(np.hypot(*d))
        if length == 0 or abs(float(d @ along)) < 0.9 * length:  # not parallel (within ~25 degrees)
            continue
        if abs(d[0] * (cy - y1) - d[1] * (cx - x1)) / length <= max(4.0, 0.5 * min(w, h)):
            return True
    return False


def _drop_dashes(cands: list[_Candidate]) -> list[_Candidate]:
    """Drops thin upright marks that line up in a column with two or more others: the
    dashes of a faint rule broken up by noise (squared paper), not a column of 1s
    (which stand apart by more than their height)."""
    thin = [i for i, c in enumerate(cands) if c.box[2] < 0.35 * c.box[3]]
    if len(thin) < 3:
        return cands
    drop: set[int] = set()
    for i in thin:
        xi, yi, wi, hi = cands[i].box
        cx = xi + wi / 2
        column = [
            j
            for j in thin
            if abs(cands[j].box[0] + cands[j].box[2] / 2 - cx) <= max(3.0, 0.08 * abs(cands[j].box[1] - yi))
            and abs(cands[j].box[1] - yi) <= 4 * max(hi, cands[j].box[3])
        ]
        if len(column) >= 3:
            drop.update(column)
    return [c for i, c in enumerate(cands) if i not in drop]


def _candidates(
    stats: np.ndarray, labels: np.ndarray, min_h: int, max_h: int
) -> tuple[list[_Candidate], list[tuple[int, int, int, int]]]:
    """Components of digit size and shape, with fragments merged into the mark they belong to.

    Returns the candidates and the boxes of the other marks big enough to be
    letters (for the word test in :func:`detect`).
    """
    H, W = labels.shape
    x, y, w, h = (stats[:, i] for i in range(4))
    inner = (x > 1) & (y > 1) & (x + w < W - 1) & (y + h < H - 1)
    keep = inner & (np.maximum(w, h) >= max(3, min_h // 5)) & (h <= max_h) & (w <= max_h)
    keep[0] = False
    ids = np.flatnonzero(keep)
    if len(ids) == 0:
        return [], []
    boxes = np.stack([x[ids], y[ids], x[ids] + w[ids], y[ids] + h[ids]], axis=1)
    order = np.argsort(-(boxes[:, 3] - boxes[:, 1]), kind="stable")  # tallest first
    groups: list[list[int]] = []
    gb = np.zeros((len(order), 4), np.int64)  # group boxes (x0, y0, x1, y1), the first n in use
    n = 0
    for j in order:
        b = boxes[j]
        bh, bw = b[3] - b[1], b[2] - b[0]
        target = -1
        if n:
            g = gb[:n]
            gh, gw = g[:, 3] - g[:, 1], g[:, 2] - g[:, 0]
            # A smaller piece over or under a mark joins it (a detached bar, a broken
            # stroke); comparable pieces side by side are separate marks (two digits).
            fits = (bh <= 0.75 * gh) & (gw <= 1.2 * gh) & (gh <= max_h)
            fits &= np.minimum(b[2], g[:, 2]) - np.maximum(b[0], g[:, 0]) >= 0.5 * bw
            fits &= np.maximum(np.maximum(g[:, 1] - b[3], b[1] - g[:, 3]), 0) <= np.maximum(2, 0.2 * gh)
            if bh <= 0.25 * bw:  # a flat bar joins as a top stroke (a 5's, a 7's), not as a rule below
                fits &= b[1] + b[3] < g[:, 1] + g[:, 3]
            mh = np.maximum(b[3], g[:, 3]) - np.minimum(b[1], g[:, 1])
            fits &= (mh <= max_h) & (np.maximum(b[2], g[:, 2]) - np.minimum(b[0], g[:, 0]) <= 1.2 * mh)
            hits = np.flatnonzero(fits)
            target = int(hits[0]) if len(hits) else -1
        if target < 0:
            groups.append([int(ids[j])])
            gb[n] = b
            n += 1
        else:
            groups[target].append(int(ids[j]))
            gb[target] = [
                min(b[0], gb[target, 0]),
                min(b[1], gb[target, 1]),
                max(b[2], gb[target, 2]),
                max(b[3], gb[target, 3]),
            ]
    gboxes = gb[:n]
    cands, marks = [], []
    centres = np.array([[(b[0] + b[2]) / 2, (b[1] + b[3]) / 2] for b in gboxes])
    for members, gb in zip(groups, gboxes):
        inside = np.count_nonzero(
            (centres[:, 0] > gb[0]) & (centres[:, 0] < gb[2]) & (centres[:, 1] > gb[1]) & (centres[:, 1] < gb[3])
        )
        if inside >= 3:  # itself and two more: a frame or grid around marks, not a digit
            continue
        bw, bh = int(gb[2] - gb[0]), int(gb[3] - gb[1])
        box = (int(gb[0]), int(gb[1]), bw, bh)
        lab = labels[box[1] : box[1] + bh, box[0] : box[0] + bw]
        fill = sum(int(np.count_nonzero(lab == k)) for k in members) / float(bw * bh)
        aspect = bw / float(bh)
        if bh < min_h or aspect > 1.6 or aspect < 0.06 or fill < 0.07 or fill > (0.92 if aspect < 0.3 else 0.88):
            if bh >= 0.4 * min_h:
                marks.append(box)
            continue
        cands.append(_Candidate(box, tuple(members)))
    return cands, marks


# --------------------------------------------------------------------------- crops


def _crops(contrast: np.ndarray, labels: np.ndarray, cands: list[_Candidate], strong: int) -> np.ndarray:
    """Each candidate's own ink -> (N, 28, 28) uint8 MNIST-style (all zero: reject).

    Other components in the box are masked out and the ink is scaled so the
    stroke's core is 1, as in MNIST; then :func:`_mnist_layout`. A candidate
    without any strong ink (``>= strong``) is a faint smudge and stays all zero.
    """
    import cv2

    out = np.zeros((len(cands), MNIST_SIZE, MNIST_SIZE), np.uint8)
    H, W = contrast.shape
    k3 = np.ones((3, 3), np.uint8)
    for i, c in enumerate(cands):
        x, y, w, h = c.box
        x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + w + 1, W), min(y + h + 1, H)
        lab = labels[y0:y1, x0:x1]
        own = lab == c.labels[0]
        for extra in c.labels[1:]:
            own |= lab == extra
        ink = contrast[y0:y1, x0:x1]
        core = ink[own]
        if core.size == 0 or int(core.max()) < strong:
            continue
        top = float(np.partition(core, (3 * core.size) // 4)[(3 * core.size) // 4])
        # The soft edge just outside the mask belongs to the stroke too.
        own8 = cv2.dilate(own.view(np.uint8), k3)
        ink = np.minimum(cv2.multiply(ink, own8, dtype=cv2.CV_32F) * (1.0 / top), 1.0)
        out[i] = _mnist_layout(ink)
    return out


def _mnist_layout(ink: np.ndarray, *, thin_bold: bool = True) -> np.ndarray:
    """Ink map -> MNIST layout, as :func:`edge_infer.preprocess.normalize_ink` does it.

    The same rules (tight box of ink > 0.25, longest side 20 px with an area
    filter, thin strokes thickened by a 3x3 max, peak to 1, centred by mass) with
    OpenCV's resize and dilate, ~10x faster per crop than the pure-numpy reference;
    tests/test_vision.py keeps the two in step. One rule more (``thin_bold``):
    strokes thicker than MNIST's are thinned (bold print seen large).
    """
    import cv2

    m = ink > 0.25
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    scale = MNIST_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sm = np.pad(small > 0.4, 1)  # stroke width: ink area over half its boundary length
    area = int(np.count_nonzero(sm))
    edges = int(np.count_nonzero(sm[1:] != sm[:-1]) + np.count_nonzero(sm[:, 1:] != sm[:, :-1]))
    if area and edges and 2.0 * area / edges < 1.5:
        small = cv2.dilate(np.pad(small, 1), np.ones((3, 3), np.uint8))
    elif thin_bold and area and edges and 2.0 * area / edges > 3.5:
        # Bold print (or a marker) seen large: strokes over 3.5 px at this scale are
        # thicker than MNIST's pen ever was, and a bold "1" with a foot then reads as
        # "2". One 2x2 erosion brings them back into MNIST's range.
        small = cv2.erode(small, np.ones((2, 2), np.uint8))
    peak = float(small.max())
    if peak > 0:
        small = np.minimum(small * (1.0 / peak), 1.0)
    return np.rint(center_of_mass_place(small, MNIST_SIZE) * 255).astype(np.uint8)


# --------------------------------------------------------------------------- rejection


def _words(boxes: list[tuple[int, int, int, int]], gap_ratio: float = 0.6) -> list[list[int]]:
    """Groups boxes into runs on one line, left to right, with gaps under ``gap_ratio`` of their height."""
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][0])
    groups: list[list[int]] = []
    for i in order:
        x, y, w, h = boxes[i]
        placed = False
        for g in groups:
            lx, ly, lw, lh = boxes[g[-1]]
            ov = min(y + h, ly + lh) - max(y, ly)
            gap = x - (lx + lw)
            ref = max(h, lh)
            if ov >= 0.5 * min(h, lh) and gap <= gap_ratio * ref and min(h, lh) >= 0.45 * ref:
                g.append(i)
                placed = True
                break
        if not placed:
            groups.append([i])
    return groups


def _reject_text(boxes: list[tuple[int, int, int, int]], ok: list[bool]) -> list[bool]:
    """Drops the marks that belong to words; returns the new ``ok`` flags.

    Marks on a line with gaps under 0.6 of their height form a run. A run with
    lower-case letters (two or more marks standing on the baseline and stopping at
    the x-height, at least a third of the run) is text: only a stretch of two or more
    full-height digits set off from the letters by a word space survives (a label
    beside its number: "Room 317"). A run of close marks that are mostly not digits
    is text too.
    """
    ok = list(ok)
    for g in _words(boxes, 0.6):
        if len(g) < 2:
            continue
        bs = [boxes[i] for i in g]
        tallest = max(b[3] for b in bs)
        base = float(np.median([b[1] + b[3] for b in bs]))
        short = [
            b[3] < 0.8 * tallest or (b[3] < 0.85 * tallest and abs(b[1] + b[3] - base) < 0.12 * tallest) for b in bs
        ]
        if sum(short) >= 2 and sum(short) >= len(g) / 3:
            keep = [ok[i] and not s for i, s in zip(g, short)]
            start = 0
            while start < len(g):  # stretches of consecutive full-height digits
                end = start
                while end + 1 < len(g) and keep[start] and keep[end + 1]:
                    end += 1
                spaced = all(
                    0 <= k < len(g) - 1 and bs[k + 1][0] - (bs[k][0] + bs[k][2]) > 0.3 * tallest
                    for k in ([start - 1] if start > 0 else []) + ([end] if end < len(g) - 1 else [])
                )
                if not (keep[start] and end > start and spaced):
                    for k in range(start, end + 1):
                        ok[g[k]] = False
                start = end + 1
        else:
            for sub in _words(bs, 0.25):  # tight runs: words, or a number with a weak digit
                if len(sub) >= 2 and sum(ok[g[k]] for k in sub) < 0.5 * len(sub):
                    for k in sub:
                        ok[g[k]] = False
    return ok


def _reading_order(dets: list[_Boxed]) -> list[_Boxed]:
    """Things with a ``box``, top to bottom by text line, then left to right."""
    if not dets:
        return dets
    by_y = sorted(dets, key=lambda d: d.box[1] + d.box[3] / 2)
    lines: list[list[_Boxed]] = [[by_y[0]]]
    for d in by_y[1:]:
        last = lines[-1]
        cy = sum(e.box[1] + e.box[3] / 2 for e in last) / len(last)
        hh = sum(e.box[3] for e in last) / len(last)
        if d.box[1] + d.box[3] / 2 - cy <= 0.5 * max(hh, d.box[3]):
            last.append(d)
        else:
            lines.append([d])
    return [d for line in lines for d in sorted(line, key=lambda e: e.box[0])]


# --------------------------------------------------------------------------- public


def detect(
    rec: DigitRecognizer,
    frame: np.ndarray,
    *,
    min_height: int = 16,
    max_height: int | None = None,
    min_score: float = 0.85,
    polarity: str = "auto",
    max_side: int = 1280,
    min_contrast: float = 0.12,
    timings: dict[str, float] | None = None,
) -> list[Detection]:
    """Finds and reads the digits in a camera frame.

    Args:
        rec: The recogniser that classifies the crops (one batch per frame).
        frame: uint8 ``(h, w)`` gray, ``(h, w, 3)`` BGR or ``(h, w, 4)`` BGRA, any size.
        min_height: Smallest digit height to report, in frame pixels.
        max_height: Largest digit height, in frame pixels; None for half the frame's
            height (segmentation is built for digits up to about a third).
        min_score: Drop digits the model reads with a lower probability.
        polarity: ``"auto"``, ``"dark"`` (dark ink on light paper) or ``"light"``
            (light on dark, e.g. chalk on a board).
        max_side: Frames with a longer side are shrunk to this for segmentation
            (boxes are mapped back); digits under ~10 px after the shrink are lost.
        min_contrast: Weakest ink kept, as a fraction of the paper's brightness.
        timings: A dict to receive the seconds spent in ``"segment"``,
            ``"prepare"`` (crops) and ``"infer"`` for this frame.

    Returns:
        Detections in reading order (top to bottom, then left to right). Empty
        for a blank, tiny or digit-free frame.

    Raises:
        TypeError: ``frame`` is None or not a numpy array.
        ValueError: Wrong dtype, rank or channel count (e.g. a 4-D batch), or a
            bad option.
    """
    from .recognizer import Detection

    t0 = time.perf_counter()
    frame = _check_frame(frame)
    min_height = _positive_int("min_height", min_height)
    max_side = _positive_int("max_side", max_side)
    if max_height is not None:
        max_height = _positive_int("max_height", max_height)
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
    if polarity not in ("auto", "dark", "light"):
        raise ValueError(f"polarity must be 'auto', 'dark' or 'light', got {polarity!r}")
    stages = {"segment": 0.0, "prepare": 0.0, "infer": 0.0}
    if timings is not None:
        timings.update(stages)
    H, W = frame.shape[:2]
    if min(H, W) < 8:
        return []
    gray, scale = _gray(frame, max_side)
    max_h = int((max_height if max_height is not None else H // 2) * scale)
    min_h = max(8, int(min_height * scale))
    if max_h < min_h:
        return []
    contrast = _contrast(gray, close_px=max(24, int(0.25 * max_h)), polarity=polarity)
    labels, cands, marks, strong = _segment(contrast, min_h, max_h, float(min_contrast))
    t1 = time.perf_counter()
    stages["segment"] = t1 - t0
    if not cands:
        if timings is not None:
            timings.update(stages)
        return []
    crops = _crops(contrast, labels, cands, strong)
    t2 = time.perf_counter()
    preds = rec.classify_batch(crops)
    t3 = time.perf_counter()
    stages["prepare"], stages["infer"] = t2 - t1, t3 - t2
    ok = [p.score >= min_score and bool(crop.any()) for p, crop in zip(preds, crops)] + [False] * len(marks)
    boxes = [c.box for c in cands] + marks
    ok = _reject_text(boxes, ok)
    inv = 1.0 / scale
    dets = [
        Detection(
            (
                int(round(c.box[0] * inv)),
                int(round(c.box[1] * inv)),
                max(1, int(round(c.box[2] * inv))),
                max(1, int(round(c.box[3] * inv))),
            ),
            p.digit,
            p.score,
        )
        for c, p, good in zip(cands, preds, ok)
        if good
    ]
    dets = _reading_order(dets)
    if timings is not None:
        stages["prepare"] += time.perf_counter() - t3
        timings.update(stages)
    return dets


def read_numbers(rec: DigitRecognizer, frame: np.ndarray, *, max_gap: float = 0.8, **options: Any) -> list[Number]:
    """Reads the numbers in a frame: digits on one line, close together, left to right.

    Args:
        rec: The recogniser.
        frame: As for :func:`detect`.
        max_gap: Largest gap between two digits of one number, as a fraction of
            the digits' height.
        **options: Passed to :func:`detect` (``min_score``, ``timings``...).

    Returns:
        Numbers in reading order; a lone digit is a one-digit number.

    Raises:
        TypeError, ValueError: As for :func:`detect`.
    """
    if not 0.0 <= float(max_gap) <= 10.0:
        raise ValueError(f"max_gap must be from 0 to 10 (digit heights), got {max_gap!r}")
    dets = detect(rec, frame, **options)
    return group_numbers(dets, max_gap=max_gap)


def group_numbers(dets: list[Detection], *, max_gap: float = 0.8) -> list[Number]:
    """Groups detections into :class:`Number` objects (see :func:`read_numbers`)."""
    numbers = []
    for g in _words([d.box for d in dets], max_gap):
        ds = tuple(sorted((dets[i] for i in g), key=lambda d: d.box[0]))
        x0 = min(d.box[0] for d in ds)
        y0 = min(d.box[1] for d in ds)
        x1 = max(d.box[0] + d.box[2] for d in ds)
        y1 = max(d.box[1] + d.box[3] for d in ds)
        numbers.append(
            Number((x0, y0, x1 - x0, y1 - y0), "".join(str(d.digit) for d in ds), ds, tuple(d.score for d in ds))
        )
    return _reading_order(numbers)
