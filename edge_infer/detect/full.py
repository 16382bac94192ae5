"""Camera frames -> digit boxes: segmentation, MNIST-style crops, one batch per frame.

The pipeline, per frame (OpenCV is imported on first use, not with the package;
steps 1-6 live in :mod:`edge_infer.detect.segment`, 7-8 here):

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
   through :func:`edge_infer.image.preprocess.normalize_ink`: tight box, longest side
   20 px, centred by mass in 28x28, white on black.
8. **One invoke** for all crops (:meth:`DigitRecognizer.classify_batch`), then
   rejection: the model's "not a digit" class (letters, symbols, line crumbs),
   a score threshold, and words: digits in a run of close marks that has letters
   in it are letters too ("oo" in "Room"), unless a word space sets them apart.
   With a digits-only model (no "not a digit" class) words are told by their
   lower-case letters instead (marks that stop at the x-height).

:func:`read_numbers` groups the digits found into numbers along a text line.

Thread safety: the functions hold no state; they are as thread-safe as the
recogniser passed in (which is).
"""

from __future__ import annotations

import time

import numpy as np

from ..image.layout import MNIST_SIZE, OPENCV, mnist_layout
from ..results import Detection, DetectStats, Prediction
from .regions import opposite_regions
from .segment import Candidate, contrast_map, frame_dark_ink, gray_frame, own_mask, quarter, segment_frame
from .segments import centre_in, group_segments, overlap, resolve
from .text import BatchClassifier, accept

__all__ = ["detect_full"]


def _crops(contrast: np.ndarray, labels: np.ndarray, cands: list[Candidate], strong: int) -> np.ndarray:
    """Each candidate's own ink -> (N, 28, 28) uint8 MNIST-style (all zero: reject).

    Other components in the box are masked out and the ink is scaled so the
    stroke's core is 1, as in MNIST; then :func:`edge_infer.image.layout.mnist_layout`. A candidate
    without any strong ink (``>= strong``) is a faint smudge and stays all zero.
    """
    import cv2

    out = np.zeros((len(cands), MNIST_SIZE, MNIST_SIZE), np.uint8)
    H, W = contrast.shape
    k3 = np.ones((3, 3), np.uint8)
    for i, c in enumerate(cands):
        x, y, w, h = c.box
        x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + w + 1, W), min(y + h + 1, H)
        own = own_mask(labels, (x0, y0, x1 - x0, y1 - y0), c.labels)
        ink = contrast[y0:y1, x0:x1]
        core = ink[own]
        if core.size == 0 or int(core.max()) < strong:
            continue
        top = float(np.partition(core, (3 * core.size) // 4)[(3 * core.size) // 4])
        # The soft edge just outside the mask belongs to the stroke too.
        own8 = cv2.dilate(own.view(np.uint8), k3)
        ink = np.minimum(cv2.multiply(ink, own8, dtype=cv2.CV_32F) * (1.0 / top), 1.0)
        mnist_layout(ink, ops=OPENCV, out=out[i])
    return out


def detect_full(
    classifier: BatchClassifier,
    frame: np.ndarray,
    *,
    min_h: int,
    max_h: int,
    min_score: float,
    polarity: str,
    max_side: int,
    min_contrast: float,
    stats: DetectStats,
) -> list[Detection]:
    """The pipeline above on a checked BGR or gray frame; boxes in frame pixels, not yet in reading order.

    ``min_h``/``max_h`` are digit heights in frame pixels; ``stats`` receives the
    seconds spent per stage. With ``polarity="auto"``, regions of the other polarity
    (:func:`edge_infer.detect.regions.opposite_regions`: counter windows, LED panels)
    are read again with the polarity turned over.
    """
    t0 = time.perf_counter()
    gray, scale = gray_frame(frame, max_side)
    max_h = int(max_h * scale)
    min_h = max(8, int(min_h * scale))
    if max_h < min_h:
        return []
    small = quarter(gray)
    dark = frame_dark_ink(small, polarity)
    # passes: (x, y, gray, dark ink, min_h, max_h, quarter-size copy): the frame, then
    # each region of the other polarity
    jobs: list[tuple[int, int, np.ndarray, bool, int, int, np.ndarray | None]] = [
        (0, 0, gray, dark, min_h, max_h, small)
    ]
    if polarity == "auto":
        for x, y, rw, rh in opposite_regions(small, dark, min_h / 4):
            x, y, rw, rh = 4 * x, 4 * y, 4 * rw, 4 * rh
            top = min(max_h, rh)
            low = max(min_h, int(0.2 * rh))
            if top >= low and rw >= 8 and rh >= 8:
                jobs.append((x, y, gray[y : y + rh, x : x + rw], not dark, low, top, None))

    marks: list[tuple[int, int, int, int]] = []
    crops: list[np.ndarray] = []
    found: list[tuple[list[Candidate], list[Candidate]]] = []
    for k, (_, _, g, ink_dark, lo_h, hi_h, g_small) in enumerate(jobs):
        polarity_k = "dark" if ink_dark else "light"
        contrast = contrast_map(g, close_px=max(24, int(0.25 * hi_h)), polarity=polarity_k, small=g_small)
        labels, boxes_of, cands, job_marks, strong = segment_frame(contrast, lo_h, hi_h, float(min_contrast))
        groups = group_segments(labels, boxes_of, lo_h, hi_h)
        if cands:
            crops.append(_crops(contrast, labels, cands, strong))
        if groups:
            crops.append(_crops(contrast, labels, groups, strong))
        found.append((cands, groups))
        if k == 0:  # the frame's own pass: its marks are the word rule's letters
            marks += job_marks
    t1 = time.perf_counter()
    stats.segment = t1 - t0
    if not crops:
        return []
    batch = np.concatenate(crops)
    t2 = time.perf_counter()
    preds = classifier.classify_batch(batch)
    t3 = time.perf_counter()
    readable = [bool(c.any()) for c in batch]
    boxes: list[tuple[int, int, int, int]] = []
    kept_preds: list[Prediction] = []
    kept_readable: list[bool] = []
    at = 0
    for k, ((ox, oy, g, ink_dark, *_), (cands, groups)) in enumerate(zip(jobs, found)):
        n = len(cands) + len(groups)
        p, r = preds[at : at + n], readable[at : at + n]
        at += n
        if groups:
            job_boxes, marks, p, r = _with_groups(cands, groups, marks, p, r, min_score, (ox, oy))
        else:
            job_boxes = [c.box for c in cands]
        if k:  # a region read with the polarity turned over: only its digits, each in its own dark surround
            keep = [
                q.is_digit and q.score >= min_score and ok and _enclosed(g, b, ink_dark)
                for q, ok, b in zip(p, r, job_boxes)
            ]
        else:
            keep = [True] * len(p)
        # and nowhere a thin mark whose ink goes on past its ends (the gap between windows)
        keep = [kp and not _continues(g, b, ink_dark) for kp, b in zip(keep, job_boxes)]
        job_boxes = [b for b, kp in zip(job_boxes, keep) if kp]
        p, r = [q for q, kp in zip(p, keep) if kp], [ok for ok, kp in zip(r, keep) if kp]
        boxes += [(x + ox, y + oy, bw, bh) for x, y, bw, bh in job_boxes]
        kept_preds += p
        kept_readable += r
    boxes, kept_preds, kept_readable = _one_per_place(boxes, kept_preds, kept_readable)
    dets = accept(classifier, boxes, marks, kept_preds, min_score, scale, kept_readable)
    stats.prepare, stats.infer = t2 - t1 + time.perf_counter() - t3, t3 - t2
    return dets


def _enclosed(gray: np.ndarray, box: tuple[int, int, int, int], dark_ink: bool) -> bool:
    """A digit read in a region stands in its window: a thin ring around its box is background.

    The light paper between the strokes of bold print, read with the polarity turned
    over, reaches out to the page around the letters; a drum digit is ringed by its
    black window, an LED digit by its dark panel.
    """
    x, y, w, h = box
    m = max(1, int(0.08 * h))
    H, W = gray.shape
    if x - m < 0 or y - m < 0 or x + w + m > W or y + h + m > H:
        return False
    patch = gray[y - m : y + h + m, x - m : x + w + m].astype(np.int16)
    ring = np.concatenate([patch[:m].ravel(), patch[-m:].ravel(), patch[m:-m, :m].ravel(), patch[m:-m, -m:].ravel()])
    inner = patch[m:-m, m:-m]
    if dark_ink:
        core, back = int(inner.min()), int(np.percentile(ring, 90))
        return bool(np.count_nonzero(ring > (core + back) // 2) >= 0.8 * ring.size)
    core, back = int(inner.max()), int(np.percentile(ring, 10))
    return bool(np.count_nonzero(ring < (core + back) // 2) >= 0.8 * ring.size)


def _continues(gray: np.ndarray, box: tuple[int, int, int, int], dark_ink: bool) -> bool:
    """A thin mark whose ink goes on past its top and bottom: the gap between two counter
    windows (the face showing through), not a "1" standing in a window."""
    x, y, w, h = box
    if w > 0.4 * h:
        return False
    band = max(2, h // 8)
    inner = gray[y + h // 3 : y + 2 * h // 3, x : x + w]
    above = gray[max(0, y - band) : y, x : x + w]
    below = gray[y + h : y + h + band, x : x + w]
    if inner.size == 0 or above.size == 0 or below.size == 0:
        return False
    pick = np.min if dark_ink else np.max
    core = float(pick(inner))
    side = float(np.median(gray[y : y + h, max(0, x - w) : x])) if x > 0 else float(np.median(inner))
    span = abs(core - side)
    if span < 10:
        return False
    return all(abs(float(np.median(b)) - core) < 0.35 * span for b in (above, below))


def _one_per_place(
    boxes: list[tuple[int, int, int, int]], preds: list[Prediction], readable: list[bool]
) -> tuple[list[tuple[int, int, int, int]], list[Prediction], list[bool]]:
    """Where two candidates stand on one place (the frame's pass and a region's, or a
    segment group beside a mark), keeps the one read better."""
    n = len(boxes)
    if n < 2:
        return boxes, preds, readable
    score = [p.score if (p.is_digit and r) else -1.0 for p, r in zip(preds, readable)]
    drop = set()
    for i in range(n):
        for j in range(i + 1, n):
            if i in drop or j in drop:
                continue
            if overlap(boxes[i], boxes[j]) > 0.6:
                drop.add(j if score[i] >= score[j] else i)
    keep = [i for i in range(n) if i not in drop]
    return [boxes[i] for i in keep], [preds[i] for i in keep], [readable[i] for i in keep]


def _with_groups(
    cands: list[Candidate],
    groups: list[Candidate],
    marks: list[tuple[int, int, int, int]],
    preds: list[Prediction],
    readable: list[bool],
    min_score: float,
    offset: tuple[int, int] = (0, 0),
) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int, int, int]], list[Prediction], list[bool]]:
    """Single candidates and segment groups -> the boxes, marks, predictions and flags to judge.

    A group read as a digit replaces the fragments it is made of; the marks inside it
    (its own segments, seen as letter-sized marks) no longer count for the word rule.
    """
    n = len(cands)
    good = [p.is_digit and p.score >= min_score and r for p, r in zip(preds, readable)]
    keep_s, keep_g = resolve(
        [(c.box, good[i], preds[i].score) for i, c in enumerate(cands)],
        [(g.box, good[n + j], preds[n + j].score, g.labels) for j, g in enumerate(groups)],
    )
    idx = [i for i in range(n) if keep_s[i]] + [n + j for j in range(len(groups)) if keep_g[j]]
    boxes = [cands[i].box if i < n else groups[i - n].box for i in idx]
    ox, oy = offset  # marks are in the frame's working pixels, groups in the pass's own
    taken = [(b[0] + ox, b[1] + oy, b[2], b[3]) for b in (groups[j].box for j in range(len(groups)) if keep_g[j])]
    if taken:
        marks = [m for m in marks if not any(centre_in(m, t) for t in taken)]
    return boxes, marks, [preds[i] for i in idx], [readable[i] for i in idx]
