"""Regions of the other polarity: counter windows, LED panels, an LCD's glass.

One polarity per frame reads paper well, but a display has its own: the white digits
of a counter sit in black windows on a light face, an LED panel glows light on dark
inside a light housing, an LCD's glass is lighter than a dark case. In the frame's
polarity such a region is a solid blob (too big for a digit) whose digits are holes.

:func:`opposite_regions` finds them: solid areas far from the paper's level, thicker
than any pen stroke, with detail of the other polarity inside; side-by-side windows
of one counter are joined into one strip. The full pipeline then reads each region
again with the polarity turned over (see :func:`edge_infer.detect.detect`).
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = ["opposite_regions"]

_MAX_REGIONS = 6


Box = Tuple[int, int, int, int]


def opposite_regions(small: np.ndarray, dark_ink: bool, min_h: float) -> list[Box]:
    """Solid areas of the other polarity, in ``small``'s pixels.

    Args:
        small: The working gray image at reduced size (uint8).
        dark_ink: The frame's ink polarity (True: dark ink on light paper).
        min_h: The smallest digit height in ``small``'s pixels.

    Returns:
        Up to six boxes ``(x, y, w, h)``, largest first, each widened by a margin so the
        region's edge lies inside it; empty when there is none.
    """
    import cv2

    H, W = small.shape
    img = small if dark_ink else cv2.bitwise_not(small)  # from here on: regions are dark
    paper = float(np.percentile(img, 75))
    if paper < 60:
        return []
    mask = (img < 0.6 * paper).view(np.uint8)
    # thicker than a pen stroke: the region survives an opening a third of a digit wide
    k = max(2, int(round(min_h / 3)))
    opened = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    # the digits inside are holes: close them so the region is solid
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, np.ones((2 * k + 1, 2 * k + 1), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    boxes: list[Box] = []
    for i in range(1, n):
        x, y, w, h, area = (int(v) for v in stats[i])
        if h < 1.2 * min_h or w < 1.2 * h or area < 0.35 * w * h:
            continue  # a display or a counter's strip is wider than tall; a bold letter is not
        if w * h > 0.6 * W * H:
            continue  # the background itself, not a region in it
        if x == 0 or y == 0 or x + w >= W or y + h >= H:
            continue  # runs off the frame: a desk, a background, not a display in view
        box_img = img[y : y + h, x : x + w]
        solid = opened[y : y + h, x : x + w] > 0
        region = closed[y : y + h, x : x + w] > 0
        m = max(1, h // 3)
        y0, x0 = max(0, y - m), max(0, x - m)
        ring = img[y0 : y + h + m, x0 : x + w + m][closed[y0 : y + h + m, x0 : x + w + m] == 0]
        if ring.size == 0 or not solid.any():
            continue
        level, around = float(np.median(box_img[solid])), float(np.median(ring))
        if level > 0.35 * around:
            continue  # not black against what surrounds it: a shadow, a grey patch
        lit = np.count_nonzero(box_img[region] > 0.5 * (level + around)) / float(np.count_nonzero(region))
        if not 0.03 <= lit <= 0.5:
            continue  # plain dark (nothing to read in it), or mostly light (not one region)
        boxes.append((x, y, w, h))
    strips = _join_strips(boxes)
    strips.sort(key=lambda b: -b[2] * b[3])
    out = []
    for x, y, w, h in strips[:_MAX_REGIONS]:
        m = max(2, int(0.3 * h))
        x0, y0 = max(0, x - m), max(0, y - m)
        out.append((x0, y0, min(W, x + w + m) - x0, min(H, y + h + m) - y0))
    return out


def _join_strips(boxes: list[Box]) -> list[Box]:
    """Joins regions side by side on one row with gaps under 0.6 of their height (a counter's windows)."""
    out: list[list[int]] = []
    for x, y, w, h in sorted(boxes):
        for b in out:
            bx, by, bw, bh = b
            overlap = min(y + h, by + bh) - max(y, by)
            if overlap >= 0.5 * min(h, bh) and x - (bx + bw) <= 0.6 * max(h, bh) and max(h, bh) <= 1.5 * min(h, bh):
                x1, y1 = max(x + w, bx + bw), max(y + h, by + bh)
                b[0], b[1] = min(x, bx), min(y, by)
                b[2], b[3] = x1 - b[0], y1 - b[1]
                break
        else:
            out.append([x, y, w, h])
    return [(b[0], b[1], b[2], b[3]) for b in out]
