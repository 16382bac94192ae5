"""Digits found in a frame -> numbers: the digits of one line, close together, left to right.

With the frame at hand (:func:`group_numbers` given ``gray``), a decimal point is
looked for in the gap between two digits of a line: one compact blob of the digits'
ink on their baseline, much smaller than a digit. It is written into the reading
(``"247.00"``), and two runs of digits that only a decimal point's gap keeps apart
are one number. Digits much smaller than their neighbours (a unit, a tiny last
drum) stay a number of their own.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..results import Detection, Number
from .text import reading_order, words

__all__ = ["find_decimal_point", "group_numbers"]

_DOT_MIN, _DOT_MAX = 0.05, 0.3  # a decimal point's side, as a share of the digits' height
_POINT_GAP = 1.6  # two runs of digits with a point between them join across a gap this many heights wide


def group_numbers(dets: list[Detection], *, max_gap: float = 0.8, gray: np.ndarray | None = None) -> list[Number]:
    """Groups detections into :class:`~edge_infer.results.Number` objects, in reading order.

    Args:
        dets: Digits found in one frame.
        max_gap: Largest gap between two digits of one number, as a fraction of their height.
        gray: The frame as a 2-D uint8 gray image (frame pixels): decimal points are
            looked for when given.

    Returns:
        Numbers in reading order; a lone digit is a one-digit number.
    """
    runs = [sorted((dets[i] for i in g), key=lambda d: d.box[0]) for g in words([d.box for d in dets], max_gap)]
    gaps: dict[tuple[Detection, Detection], bool] = {}  # each gap looked at once

    def point(a: Detection, b: Detection) -> bool:
        if (a, b) not in gaps:
            gaps[a, b] = gray is not None and find_decimal_point(gray, a.box, b.box) is not None
        return gaps[a, b]

    if gray is not None and len(runs) > 1:
        runs = _join_across_points(runs, point)
    numbers = []
    for ds in runs:
        text = []
        points = 0
        for a, b in zip(ds, ds[1:] + [None]):
            text.append(str(a.digit))
            if b is not None and point(a, b):
                text.append(".")
                points += 1
        value = "".join(text)
        if points > 1:  # a clock's colon, dots between groups: not one decimal number
            value = value.replace(".", "")
        numbers.append(_number(tuple(ds), value))
    return reading_order(numbers)


def _number(ds: tuple[Detection, ...], value: str) -> Number:
    x0 = min(d.box[0] for d in ds)
    y0 = min(d.box[1] for d in ds)
    x1 = max(d.box[0] + d.box[2] for d in ds)
    y1 = max(d.box[1] + d.box[3] for d in ds)
    return Number((x0, y0, x1 - x0, y1 - y0), value, ds, tuple(d.score for d in ds))


def _join_across_points(
    runs: list[list[Detection]], point: Callable[[Detection, Detection], bool]
) -> list[list[Detection]]:
    """Joins runs on one line whose gap holds a decimal point (``83 . 19`` -> ``83.19``)."""
    runs = sorted(runs, key=lambda r: r[0].box[0])
    out: list[list[Detection]] = []
    for run in runs:
        for prev in out:
            a, b = prev[-1], run[0]
            h = max(a.box[3], b.box[3])
            same_line = abs((a.box[1] + a.box[3]) - (b.box[1] + b.box[3])) <= 0.25 * h
            similar = min(a.box[3], b.box[3]) >= 0.7 * h
            gap = b.box[0] - (a.box[0] + a.box[2])
            if same_line and similar and 0 <= gap <= _POINT_GAP * h and point(a, b):
                prev.extend(run)
                break
        else:
            out.append(list(run))
    return out


def find_decimal_point(
    gray: np.ndarray, left: tuple[int, int, int, int], right: tuple[int, int, int, int]
) -> tuple[int, int, int, int] | None:
    """The box of a decimal point between two digit boxes on one line, or None.

    The digits' ink side (dark or light) is read from the left digit's box; the point
    is the one compact blob of that ink in the gap, sitting on the digits' baseline,
    a twentieth to under a third of their height on a side.
    """
    import cv2

    h = max(left[3], right[3])
    base = max(left[1] + left[3], right[1] + right[3])
    x0 = left[0] + left[2] - int(0.05 * h)
    x1 = right[0] + int(0.05 * h)
    y0, y1 = base - int(0.4 * h), base + int(0.12 * h) + 1
    H, W = gray.shape
    x0, x1, y0, y1 = max(0, x0), min(W, x1), max(0, y0), min(H, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    lx, ly, lw, lh = left
    digit = gray[max(0, ly) : ly + lh, max(0, lx) : lx + lw]
    if digit.size < 4:
        return None
    lo, med, hi = np.percentile(digit, (5, 50, 95))
    dark = med - lo > hi - med
    ink = lo if dark else hi
    win = gray[y0:y1, x0:x1].astype(np.int16)
    bg = float(np.median(win))
    if abs(ink - bg) < 20:
        return None
    level = bg + 0.5 * (ink - bg)
    mask = ((win < level) if dark else (win > level)).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = None
    for i in range(1, n):
        bx, by, bw, bh, area = (int(v) for v in stats[i])
        if bx == 0 or bx + bw >= x1 - x0:
            continue  # cut by the window's side: the end of a digit's stroke
        if not (_DOT_MIN * h <= bw <= _DOT_MAX * h and _DOT_MIN * h <= bh <= _DOT_MAX * h):
            continue
        if not 0.5 <= bw / bh <= 2.0 or area < 0.5 * bw * bh:
            continue
        if y0 + by + bh < base - 0.22 * h:  # not on the baseline: a colon's upper dot, a stray mark
            continue
        if found is not None:
            return None  # two candidates: not a clear decimal point
        found = (x0 + bx, y0 + by, bw, bh)
    return found
