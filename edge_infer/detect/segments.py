"""Digits made of separate strokes: seven-segment (with gaps between segments), dot matrix.

A seven-segment digit is two to seven blobs; a dot-matrix one up to 35. The full
pipeline's components are single blobs (or a digit and its detached bar), so these
digits come out as "1"s or not at all. Here the blobs are grouped into digits:

1. **Stroke-like blobs**: compact pieces (filling over half their box), no taller
   than a digit.
2. **Grouping at several scales**: the blobs' mask is dilated with square kernels from
   a tenth of the smallest digit height up; each grown component gathers the blobs
   under it. A display's segment gaps close at a small scale, long before the wider
   gaps between its digits do.
3. **Digit-shaped groups**: two or more blobs, each a fragment (no taller than 70% of
   the group: a whole handwritten digit never groups with its neighbour) shaped like a
   segment (a bar) or a dot, the group digit-sized, narrower than tall, and the kernel
   small against its height.

The groups are returned as candidates over their own label image; the full pipeline
classifies them in the frame's one batch and keeps a group over the fragments it
contains when the model reads it as a digit (:func:`resolve`).
"""

from __future__ import annotations

import numpy as np

from .segment import Candidate

__all__ = ["group_segments", "overlap", "resolve"]

_MIN_FILL = 0.55  # a segment or a dot fills most of its box; a curved pen stroke far less
_FRAGMENT = 0.7  # every member is at most this share of the group's height
_MAX_KERNEL = 0.22  # the closing kernel is at most this share of the group's height (a segment gap)


def group_segments(mask: np.ndarray, min_h: int, max_h: int) -> tuple[np.ndarray, list[Candidate]]:
    """Groups of stroke-like blobs that may be one digit each.

    Args:
        mask: uint8 ink mask (255 = ink) in working pixels.
        min_h, max_h: Digit heights in working pixels.

    Returns:
        ``(labels, candidates)``: the blobs' label image and the groups over it
        (each with two or more member labels), largest scale last.
    """
    import cv2

    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8, ltype=cv2.CV_32S)
    if n <= 2:
        return labels, []
    x, y, w, h, area = (stats[:, i] for i in range(5))
    H, W = mask.shape
    fill = area / np.maximum(w * h, 1)
    ok = (area >= 3) & (fill >= _MIN_FILL) & (h <= _FRAGMENT * max_h) & (w <= max_h)
    ok &= (x > 0) & (y > 0) & (x + w < W) & (y + h < H)
    ok[0] = False
    ids = np.flatnonzero(ok)
    if len(ids) < 2:
        return labels, []
    strokes = np.isin(labels, ids).view(np.uint8)
    cy = np.clip(np.rint(centroids[ids, 1]).astype(int), 0, H - 1)
    cx = np.clip(np.rint(centroids[ids, 0]).astype(int), 0, W - 1)
    seen: set[tuple[int, ...]] = set()
    out: list[Candidate] = []
    k = max(2, int(round(0.1 * min_h)))
    while k <= _MAX_KERNEL * max_h:
        closed = cv2.dilate(strokes, np.ones((k, k), np.uint8))
        _, glabels = cv2.connectedComponents(closed, connectivity=8, ltype=cv2.CV_32S)
        owner = glabels[cy, cx]
        order = np.argsort(owner, kind="stable")
        cuts = np.flatnonzero(np.diff(owner[order])) + 1
        for part in np.split(order, cuts):
            if len(part) < 2 or owner[part[0]] == 0:
                continue
            members = ids[part]
            x0, y0 = int(x[members].min()), int(y[members].min())
            x1, y1 = int((x + w)[members].max()), int((y + h)[members].max())
            gw, gh = x1 - x0, y1 - y0
            if not (min_h <= gh <= max_h and 0.1 * gh <= gw <= 1.0 * gh and k <= _MAX_KERNEL * gh):
                continue
            if int(h[members].max()) > _FRAGMENT * gh:
                continue
            mw, mh = w[members], h[members]
            thin = np.minimum(mw, mh) <= 0.7 * np.maximum(mw, mh)
            small = np.maximum(mw, mh) <= 0.2 * gh
            if not np.all(thin | small):
                continue  # a member shaped like a whole mark (a digit, a letter), not a segment or a dot
            key = tuple(sorted(int(m) for m in members))
            if key in seen:
                continue
            seen.add(key)
            out.append(Candidate((x0, y0, gw, gh), key))
        k = int(np.ceil(k * 1.5))
    return labels, out


def resolve(
    singles: list[tuple[tuple[int, int, int, int], bool, float]],
    groups: list[tuple[tuple[int, int, int, int], bool, float, tuple[int, ...]]],
) -> tuple[list[bool], list[bool]]:
    """Which single-blob candidates and which groups to keep.

    Args:
        singles: ``(box, read as a digit, score)`` per candidate of the full pipeline.
        groups: ``(box, read as a digit, score, member labels)`` per group.

    Returns:
        ``(keep_single, keep_group)``. Groups read as digits are taken best first, no
        two sharing a blob or overlapping much. A whole digit read on its own (a single
        candidate at least 80% of the group's height, centred in it) wins over a group;
        otherwise the group replaces the fragments centred in it.
    """
    keep_single = [True] * len(singles)
    keep_group = [False] * len(groups)
    used: set[int] = set()
    chosen: list[tuple[int, int, int, int]] = []
    for i in sorted(range(len(groups)), key=lambda j: -groups[j][2]):
        box, ok, _, members = groups[i]
        if not ok or used.intersection(members) or any(overlap(box, c) > 0.3 for c in chosen):
            continue
        inside = [j for j, (b, _, _) in enumerate(singles) if keep_single[j] and _centre_in(b, box)]
        if any(singles[j][1] and singles[j][0][3] >= 0.8 * box[3] for j in inside):
            continue  # a whole digit is read there already
        for j in inside:
            keep_single[j] = False
        keep_group[i] = True
        used.update(members)
        chosen.append(box)
    return keep_single, keep_group


def _centre_in(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / float(min(a[2] * a[3], b[2] * b[3]) or 1)
