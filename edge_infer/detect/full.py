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
from ..results import Detection, DetectStats
from .segment import Candidate, contrast_map, gray_frame, own_mask, segment_frame
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
    seconds spent per stage.
    """
    t0 = time.perf_counter()
    gray, scale = gray_frame(frame, max_side)
    max_h = int(max_h * scale)
    min_h = max(8, int(min_h * scale))
    if max_h < min_h:
        return []
    contrast = contrast_map(gray, close_px=max(24, int(0.25 * max_h)), polarity=polarity)
    labels, cands, marks, strong = segment_frame(contrast, min_h, max_h, float(min_contrast))
    t1 = time.perf_counter()
    stats.segment = t1 - t0
    if not cands:
        return []
    crops = _crops(contrast, labels, cands, strong)
    t2 = time.perf_counter()
    preds = classifier.classify_batch(crops)
    t3 = time.perf_counter()
    dets = accept(classifier, [c.box for c in cands], marks, preds, min_score, scale, [bool(c.any()) for c in crops])
    stats.prepare, stats.infer = t2 - t1 + time.perf_counter() - t3, t3 - t2
    return dets
