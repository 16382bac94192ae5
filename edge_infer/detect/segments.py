"""Digits made of separate strokes: seven-segment (with gaps between segments), dot matrix.

A seven-segment digit is two to seven blobs; a dot-matrix one up to 35. The full
pipeline's components are single blobs (or a digit and its detached bar), so these
digits come out as "1"s or not at all. Here the blobs are grouped into digits:

1. **Stroke-like blobs**: compact pieces (filling over half their box), no taller
   than a digit.
2. **Grouping at several scales**: blobs whose boxes are closer than the scale join
   (what growing each blob by the scale would join, for pieces as compact as segments
   and dots), from a tenth of the smallest digit height up. A display's segment gaps
   close at a small scale, long before the wider gaps between its digits do.
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

__all__ = ["centre_in", "group_segments", "overlap", "resolve"]

_MIN_FILL = 0.55  # a segment or a dot fills most of its box; a curved pen stroke far less
_FRAGMENT = 0.7  # every member is at most this share of the group's height
_MAX_BLOBS = 600  # the most blobs paired up in one frame
_MAX_KERNEL = 0.22  # the closing kernel is at most this share of the group's height (a segment gap)


def group_segments(labels: np.ndarray, boxes: np.ndarray, min_h: int, max_h: int) -> list[Candidate]:
    """Groups of stroke-like blobs that may be one digit each.

    Args:
        labels: The frame's component labels (0 = no ink), in working pixels.
        boxes: ``(n, 4)`` boxes ``(x, y, w, h)`` of the labels.
        min_h, max_h: Digit heights in working pixels.

    Returns:
        The groups over ``labels`` (each with two or more member labels), smallest scale first.
    """
    n = len(boxes)
    if n <= 2:
        return []
    x, y, w, h = (boxes[:, i] for i in range(4))
    H, W = labels.shape
    small = (h <= _FRAGMENT * max_h) & (w <= max_h) & (np.maximum(w, h) >= 2)
    small &= (x > 0) & (y > 0) & (x + w < W) & (y + h < H)
    small[0] = False
    if np.count_nonzero(small) < 2:
        return []
    area = np.bincount(labels.ravel(), minlength=n)[:n]
    ok = small & (area >= 3) & (area >= _MIN_FILL * w * h)
    ids = np.flatnonzero(ok)
    if len(ids) < 2:
        return []
    if len(ids) > _MAX_BLOBS:  # a page of small print: the biggest pieces are enough
        ids = ids[np.argsort(-h[ids], kind="stable")[:_MAX_BLOBS]]
    # Two blobs join when the gap between their boxes is under the scale: what growing
    # each blob's mask by the scale would join, for pieces as compact as segments and dots.
    bx0, by0, bx1, by1 = x[ids], y[ids], (x + w)[ids], (y + h)[ids]
    gap = np.maximum(
        np.maximum(bx0[:, None], bx0[None, :]) - np.minimum(bx1[:, None], bx1[None, :]),
        np.maximum(by0[:, None], by0[None, :]) - np.minimum(by1[:, None], by1[None, :]),
    )
    top = _MAX_KERNEL * max_h
    ii, jj = np.nonzero(np.triu(gap < top, 1))
    order = np.argsort(gap[ii, jj], kind="stable")
    edges = list(zip(gap[ii, jj][order].tolist(), ii[order].tolist(), jj[order].tolist()))
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: set[tuple[int, ...]] = set()
    out: list[Candidate] = []
    k = max(2, int(round(0.1 * min_h)))
    e = 0
    while k <= top and e < len(edges):
        before = e
        while e < len(edges) and edges[e][0] < k:
            _, i, j = edges[e]
            parent[root(i)] = root(j)
            e += 1
        if e == before:  # nothing joined at this scale: the same groups as the last
            k = int(np.ceil(k * 1.5))
            continue
        parts: dict[int, list[int]] = {}
        for i in {i for _, a, b in edges[:e] for i in (a, b)}:
            parts.setdefault(root(i), []).append(i)
        for part in parts.values():
            if len(part) < 2:
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
    return out


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
        inside = [j for j, (b, _, _) in enumerate(singles) if keep_single[j] and centre_in(b, box)]
        if any(singles[j][1] and singles[j][0][3] >= 0.8 * box[3] for j in inside):
            continue  # a whole digit is read there already
        for j in inside:
            keep_single[j] = False
        keep_group[i] = True
        used.update(members)
        chosen.append(box)
    return keep_single, keep_group


def centre_in(box: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area."""
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / float(min(a[2] * a[3], b[2] * b[3]) or 1)
