"""Frame -> candidate digit regions: the segmentation half of :mod:`edge_infer.detect.full`.

The paper's brightness is estimated at a quarter size by a morphological closing
(opening for light ink) and divided out, so uneven light and shadows cancel;
polarity comes from black-hat against top-hat; hysteresis thresholds give the ink
mask; grid and ruled lines are erased in their own pixels; fragments of one digit
are merged into candidates. OpenCV is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_BG_SCALE = 4  # the paper-brightness estimate is made at 1/4 size


@dataclass(frozen=True)
class Candidate:
    box: tuple[int, int, int, int]  # working-image pixels
    labels: tuple[int, ...]  # component labels that make it up


def gray_frame(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
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


def halve(img: np.ndarray) -> np.ndarray:
    """``img`` at half size by area averaging, cut to even sides first: OpenCV's area
    resize is fast only by a whole factor (by 105/52 it takes its general path)."""
    import cv2

    h, w = img.shape[0] // 2, img.shape[1] // 2
    return cv2.resize(img[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)


def _hat_votes(img: np.ndarray) -> tuple[int, int]:
    """Strong (over 20 levels) 3 px dark features (black-hat) and light ones (top-hat)."""
    import cv2

    k = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    dark = int(np.count_nonzero(cv2.morphologyEx(img, cv2.MORPH_BLACKHAT, k) > 20))
    return dark, int(np.count_nonzero(cv2.morphologyEx(img, cv2.MORPH_TOPHAT, k) > 20))


def frame_dark_ink(small: np.ndarray, polarity: str) -> bool:
    """True when the ink is darker than the paper (see the module docstring, step 2).

    Counts strong small dark features (black-hat) against strong small light ones
    (top-hat), 3 px across; smooth shadows and gradients give neither. The count is
    made at half this size first, and when that is not clear (under 20 features, or
    not 2:1) again at this size, and the two added. One size alone misleads: with
    5 px features the paper between the strokes of 40-60 px print outvotes the
    ink; at 3 px the strokes of bold print over 100 px are too thick to count; at
    half size small faint digits give no features at all.
    """
    if polarity != "auto":
        return polarity == "dark"
    dark = light = 0
    if min(small.shape) >= 6:
        dark, light = _hat_votes(halve(small))
        if dark + light >= 20 and 2 * min(dark, light) <= max(dark, light):
            return dark > light
    more_dark, more_light = _hat_votes(small)
    return dark + more_dark >= light + more_light


def quarter(gray: np.ndarray) -> np.ndarray:
    """``gray`` at a quarter of its size (area averaged): where the paper and the polarity are judged."""
    import cv2

    h, w = gray.shape
    return cv2.resize(gray, (max(1, w // _BG_SCALE), max(1, h // _BG_SCALE)), interpolation=cv2.INTER_AREA)


def contrast_map(gray: np.ndarray, close_px: int, polarity: str, small: np.ndarray | None = None) -> np.ndarray:
    """Ink contrast 0-255: ``255 * (paper - pixel) / paper``, paper estimated by a close.

    Dark ink on light paper; a light-on-dark frame is inverted first. ``small`` is
    :func:`quarter` of ``gray`` when the caller has made it already.
    """
    import cv2

    h, w = gray.shape
    if small is None:
        small = quarter(gray)
    if not frame_dark_ink(small, polarity):
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
    floored = cv2.max(paper, float(floor))  # type: ignore[call-overload]  # a scalar operand; the stubs omit it
    return cv2.divide(cv2.subtract(paper, gray), floored, scale=255)


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
    # In a small region that is mostly ink (a counter's strip read with the polarity
    # turned over) the deviation is the ink's own: keep the threshold at half scale.
    lo = min(lo, 128)
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


def segment_frame(
    contrast: np.ndarray, min_h: int, max_h: int, min_contrast: float
) -> tuple[np.ndarray, np.ndarray, list[Candidate], list[tuple[int, int, int, int]], int]:
    """Contrast map -> (labels, their boxes, digit candidates, other marks, strong-ink level), in working pixels."""
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
    structure_boxes = [(int(stats[i, 0]), int(stats[i, 1]), int(stats[i, 2]), int(stats[i, 3])) for i in ids]
    before_erasure = labels  # which structure each pixel belonged to, for _cut_from_structure
    lines: list[tuple[float, float, float, float]] = []
    if ids:
        mask, lines = _erase_lines(mask, labels, stats, ids, min_h, max_h)
        labels, stats = _components(mask)
    dashes = _dash_lines(mask, labels, stats, min_h)
    if dashes:
        lines += dashes
        labels, stats = _components(mask)
    cands, marks = _candidates(stats, labels, min_h, max_h)
    cands = [
        c
        for c in cands
        if not _on_a_line(c.box, lines)
        and not _line_residue(c.box, structure_boxes)
        and not _cut_from_structure(c, labels, before_erasure, ids)
    ]
    return labels, stats, _drop_collinear(_drop_dashes(cands), labels, structure_boxes), marks, (lo + hi) // 2


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


def own_mask(labels: np.ndarray, box: tuple[int, int, int, int], members: tuple[int, ...]) -> np.ndarray:
    """The pixels of a candidate's own components within its box (others masked out)."""
    x, y, w, h = box
    return _member(labels[y : y + h, x : x + w], members)


def _member(roi: np.ndarray, ids: tuple[int, ...] | list[int]) -> np.ndarray:
    """``np.isin(roi, ids)`` for a few label ids: one comparison per id, which on a
    small box is several times quicker than ``np.isin``'s sorting."""
    if not ids or len(ids) > 4:
        return np.isin(roi, ids)
    out = roi == ids[0]
    for i in ids[1:]:
        out |= roi == i
    return out


def _thin(box: tuple[int, int, int, int]) -> bool:
    """A stroke-like box: the long side three times the short one or more."""
    return max(box[2], box[3]) >= 3 * min(box[2], box[3])


def _within(box: tuple[int, int, int, int], outer: tuple[int, int, int, int], slack: int = 2) -> bool:
    x, y, w, h = box
    sx, sy, sw, sh = outer
    return x >= sx - slack and y >= sy - slack and x + w <= sx + sw + slack and y + h <= sy + sh + slack


def _line_residue(box: tuple[int, int, int, int], structures: list[tuple[int, int, int, int]]) -> bool:
    """A thin mark left of a grid or rule whose lines were erased: inside the structure's
    box and either at its edge (a corner stub) or spanning half of it (a border line the
    transform missed). A "1" in a cell stands clear of the grid's outer edge and is
    shorter than half the grid."""
    x, y, w, h = box
    if min(w, h) > 0.35 * max(w, h):
        return False
    for sx, sy, sw, sh in structures:
        if not _within(box, (sx, sy, sw, sh)):
            continue
        at_edge = min(x - sx, y - sy, sx + sw - x - w, sy + sh - y - h) <= max(4, 0.25 * max(w, h))
        if at_edge or h >= 0.45 * sh or w >= 0.45 * sw:
            return True
    return False


def _cut_from_structure(c: Candidate, labels: np.ndarray, before_erasure: np.ndarray, structures: list[int]) -> bool:
    """A thin mark whose ink belonged to a grid, rule or page edge before its lines were
    erased is a piece of that line, not a "1" (a digit merely near a line is not part of it)."""
    if not structures or not _thin(c.box):
        return False
    x, y, w, h = c.box
    own = own_mask(labels, c.box, c.labels)
    n = np.count_nonzero(own)
    was_structure = _member(before_erasure[y : y + h, x : x + w], structures)
    return bool(n > 0 and np.count_nonzero(was_structure & own) >= 0.8 * n)


def _drop_collinear(
    cands: list[Candidate], labels: np.ndarray, structures: list[tuple[int, int, int, int]]
) -> list[Candidate]:
    """Drops thin marks inside a grid that lie on one straight line with another thin
    mark: the pieces of a (tilted, thin) grid line the transform missed, cut apart by the
    erased lines across it. Two handwritten 1s are never that exactly in line."""
    import cv2

    if not structures:
        return cands
    thin = []
    for i, c in enumerate(cands):
        if not _thin(c.box) or not any(_within(c.box, s) for s in structures):
            continue
        x, y, w, h = c.box
        ys, xs = np.nonzero(own_mask(labels, c.box, c.labels))
        if len(xs) < 5:
            continue
        fit = cv2.fitLine(np.stack([xs + x, ys + y], 1).astype(np.float32), cv2.DIST_L2, 0, 0.01, 0.01).ravel()
        thin.append((i, float(fit[0]), float(fit[1]), float(fit[2]), float(fit[3]), max(w, h)))
    drop: set[int] = set()
    for a in range(len(thin)):
        i, vx, vy, cx, cy, la = thin[a]
        for b in range(a + 1, len(thin)):
            j, ux, uy, dx, dy, lb = thin[b]
            if abs(vx * ux + vy * uy) < 0.995:  # not parallel within ~6 degrees
                continue
            off = abs((dx - cx) * vy - (dy - cy) * vx)  # j's centre from i's axis
            gap = abs((dx - cx) * vx + (dy - cy) * vy)
            if off <= max(2.5, 0.04 * gap) and gap <= 3 * max(la, lb):
                drop.update((i, j))
    return [c for k, c in enumerate(cands) if k not in drop]


def _drop_dashes(cands: list[Candidate]) -> list[Candidate]:
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
) -> tuple[list[Candidate], list[tuple[int, int, int, int]]]:
    """Components of digit size and shape, with fragments merged into the mark they belong to.

    Returns the candidates and the boxes of the other marks big enough to be
    letters (for the word test in :func:`detect`).
    """
    H, W = labels.shape
    x, y, w, h = (stats[:, i] for i in range(4))
    inner = (x > 1) & (y > 1) & (x + w < W - 1) & (y + h < H - 1)
    keep = inner & (np.maximum(w, h) >= max(3, min_h // 5)) & (h <= max_h) & (w <= max_h)
    keep[0] = False
    # A frame drawn around marks (a box on a form, the border of a grid whose inner
    # lines were erased) is not a digit, and pieces must not merge into it: drop
    # components with two or more marks (not specks) inside their box (85% of the
    # mark's box or more: the rings of a "%" stick out of its bar's a little).
    big = np.flatnonzero(keep & (h >= min_h))
    marks_ = np.flatnonzero(keep & (h >= 0.4 * min_h))
    if len(big) and len(marks_) > 2:
        mx0, my0, mx1, my1 = x[marks_], y[marks_], (x + w)[marks_], (y + h)[marks_]
        iw = np.clip(np.minimum(mx1[None, :], (x + w)[big, None]) - np.maximum(mx0[None, :], x[big, None]), 0, None)
        ih = np.clip(np.minimum(my1[None, :], (y + h)[big, None]) - np.maximum(my0[None, :], y[big, None]), 0, None)
        inside = iw * ih >= 0.85 * (w * h)[marks_][None, :]
        inside &= marks_[None, :] != big[:, None]
        enclosed = inside.sum(axis=1)
        keep[big[enclosed >= 2]] = False
    ids = np.flatnonzero(keep)
    if len(ids) == 0:
        return [], []
    boxes = np.stack([x[ids], y[ids], x[ids] + w[ids], y[ids] + h[ids]], axis=1)
    order = np.argsort(-(boxes[:, 3] - boxes[:, 1]), kind="stable")  # tallest first
    # Plain Python on a few dozen boxes: numpy's per-call cost made this loop 10x slower.
    box_list = boxes.tolist()
    groups: list[list[int]] = []
    gbox: list[tuple[int, int, int, int]] = []  # each group's box (x0, y0, x1, y1)
    for j in order.tolist():
        x0, y0, x1, y1 = box_list[j]
        bh, bw = y1 - y0, x1 - x0
        half_w, flat = 0.5 * bw, bh <= 0.25 * bw
        target = -1
        for k, (gx0, gy0, gx1, gy1) in enumerate(gbox):
            # A smaller piece over or under a mark joins it (a detached bar, a broken
            # stroke); comparable pieces side by side are separate marks (two digits).
            if (x1 if x1 < gx1 else gx1) - (x0 if x0 > gx0 else gx0) < half_w:
                continue  # not over or under this mark
            gh = gy1 - gy0
            if bh > 0.75 * gh or gh > max_h or gx1 - gx0 > 1.2 * gh:
                continue
            if max(gy0 - y1, y0 - gy1, 0) > max(2, 0.2 * gh):
                continue
            if flat and y0 + y1 >= gy0 + gy1:
                continue  # a flat bar joins as a top stroke (a 5's, a 7's), not as a rule below
            mh = max(y1, gy1) - min(y0, gy0)
            if mh > max_h or max(x1, gx1) - min(x0, gx0) > 1.2 * mh:
                continue
            target = k
            break
        if target < 0:
            groups.append([int(ids[j])])
            gbox.append((x0, y0, x1, y1))
        else:
            groups[target].append(int(ids[j]))
            gx0, gy0, gx1, gy1 = gbox[target]
            gbox[target] = (min(x0, gx0), min(y0, gy0), max(x1, gx1), max(y1, gy1))
    gboxes = np.array(gbox, np.int64).reshape(-1, 4)
    groups, gboxes = _merge_overlapping(groups, gboxes, max_h)
    cands, marks = [], []
    for members, gb in zip(groups, gboxes):
        bw, bh = int(gb[2] - gb[0]), int(gb[3] - gb[1])
        if bh < 0.4 * min_h:  # specks: neither a digit nor a letter
            continue
        box = (int(gb[0]), int(gb[1]), bw, bh)
        aspect = bw / float(bh)
        if bh >= min_h and 0.06 <= aspect <= 2.0:
            fill = np.count_nonzero(own_mask(labels, box, tuple(members))) / float(bw * bh)
            if 0.07 <= fill <= (0.92 if aspect < 0.3 else 0.88):
                cands.append(Candidate(box, tuple(members)))
                continue
        marks.append(box)
    return cands, marks


def _merge_overlapping(groups: list[list[int]], boxes: np.ndarray, max_h: int) -> tuple[list[list[int]], np.ndarray]:
    """Merges groups whose boxes overlap by a quarter of the smaller one: the pieces of
    one glyph ("%", a broken letter) rather than two digits side by side, whose boxes
    barely touch. The merged mark is then read whole (the model rejects a "%")."""
    n = len(groups)
    if n < 2:
        return groups, boxes
    x0, y0, x1, y1 = (boxes[:, i].astype(np.float64) for i in range(4))
    iw = np.clip(np.minimum(x1[:, None], x1[None]) - np.maximum(x0[:, None], x0[None]), 0, None)
    ih = np.clip(np.minimum(y1[:, None], y1[None]) - np.maximum(y0[:, None], y0[None]), 0, None)
    area = (x1 - x0) * (y1 - y0)
    small = np.minimum(area[:, None], area[None])
    hit = (iw * ih >= 0.25 * np.maximum(small, 1)) & (small >= 0.15 * np.maximum(area[:, None], area[None]))
    np.fill_diagonal(hit, False)
    if not hit.any():
        return groups, boxes
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    out_boxes = boxes.copy()
    for i, j in zip(*np.nonzero(np.triu(hit))):
        ri, rj = root(int(i)), root(int(j))
        if ri == rj:
            continue
        a, b = out_boxes[ri], out_boxes[rj]
        m = np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])])
        if m[3] - m[1] > max_h or m[2] - m[0] > 2 * (m[3] - m[1]):
            continue
        parent[rj] = ri
        out_boxes[ri] = m
    merged: dict[int, list[int]] = {}
    for i in range(n):
        merged.setdefault(root(i), []).extend(groups[i])
    keys = sorted(merged)
    return [merged[k] for k in keys], out_boxes[keys]
