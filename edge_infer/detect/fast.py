"""The fast detection pipeline: ``detect(frame, fast=True)``.

For frame rate over robustness (a Pi Zero, a high-FPS camera, clean paper). One
pass over a shrunken frame, as in OpenCV's digit-recognition sample, but with one
batched invoke per frame and the model's "not a digit" class:

1. the frame is made gray and shrunk so the smallest digit is about 7 px tall;
2. polarity as in the full pipeline (strong small dark features against light ones);
3. an adaptive mean threshold gives the ink, outer contours the marks;
4. marks of digit size, shape and ink fill are laid out MNIST-style (their gray
   levels under the mask) and classified in one batch; words are dropped by the same rule as the full
   pipeline (:func:`edge_infer.detect.text.reject_text`).

What it gives up, against the full pipeline (:mod:`edge_infer.detect.segment`): no
flattening of uneven light beyond the threshold's window, no line or grid
erasure (a digit touching a line is lost) and no merging of broken strokes.
``edge-infer bench`` reports both pipelines' recall and precision on the same scenes.
"""

from __future__ import annotations

import time

import numpy as np

from ..image.layout import MNIST_SIZE, OPENCV, mnist_layout
from ..results import Detection, DetectStats
from .segment import frame_dark_ink, halve
from .text import BatchClassifier, accept

__all__ = ["detect_fast"]

_WORK_MIN_H = 7  # the smallest digit's height in the shrunken frame, pixels
_MAX_ASPECT = 2.0  # widest digit box, as a multiple of its height (a wide handwritten 2)
_FILL = (0.1, 0.75)  # ink share of a digit's box
_OFFSET = 10  # adaptive threshold: ink is this many gray levels beyond the local mean


def _crop_batch(ink: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """The marks' boxes -> an ``(N, 28, 28)`` uint8 batch of MNIST-style crops.

    ``ink`` is the working frame's ink strength (how far a pixel is from white
    towards the ink's side), zero off the ink mask. In each box it is scaled so the
    strongest ink is 255: one ``convertScaleAbs`` call, no offset, so the mask's
    zeros stay zero. Then :func:`edge_infer.image.layout.mnist_layout` lays it out
    straight into the batch (longest side 20 px, centre of mass in the middle), with
    no stroke-width rule and the levels as they are.

    Ink is measured from white, not from the box's own paper level: one call per
    box instead of two, about 4% of the frame's time. On a page darker than white
    a stroke's soft edge comes out a little stronger than in MNIST: on the 310
    development, benchmark and test scenes, recall and precision fall by at most
    0.006 against the paper-level map.

    """
    import cv2

    minmax, scale = cv2.minMaxLoc, cv2.convertScaleAbs
    crops = np.zeros((len(boxes), MNIST_SIZE, MNIST_SIZE), np.uint8)
    for crop, (x, y, w, h) in zip(crops, boxes):
        g = ink[y : y + h, x : x + w]
        strongest = minmax(g)[1]
        mapped = scale(g, None, 255.0 / strongest if strongest > 1.0 else 255.0, 0.0)
        mnist_layout(mapped, ops=OPENCV, stroke_rule=False, peak_to_white=False, out=crop)
    return crops


def _shrink(gray: np.ndarray, s: float) -> np.ndarray:
    """``gray`` shrunk by ``s`` < 1: averaged over whole-pixel blocks (OpenCV's fast
    integer ``INTER_AREA``), then any remaining factor linear.

    One ``INTER_AREA`` resize by a factor that is not a whole number takes OpenCV's
    general path, several times slower than the whole frame's other stages together;
    ``cv2.resize``'s linear path is also slower than ``warpAffine`` with the same
    pixel-centre mapping (within one gray level of it).
    """
    import cv2

    h, w = gray.shape
    k = int(1.0 / s + 1e-9)
    if k >= 2:
        gray = cv2.resize(gray, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    r = s * k
    if r < 1.0 - 1e-9:
        gray = cv2.warpAffine(
            gray,
            np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5]], np.float32),
            (max(1, round(w * s)), max(1, round(h * s))),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return gray


def _threshold(gray: np.ndarray, block: int, dark: bool) -> np.ndarray:
    """OpenCV's adaptive mean threshold with offset ``_OFFSET``, bit for bit: 255 where
    a pixel is that many levels beyond the (rounded) mean of its ``block`` x ``block``
    window (darker for ``dark`` ink, else lighter), 0 elsewhere.

    ``cv2.adaptiveThreshold`` compares through a per-pixel table in a loop that is not
    vectorised; these three calls are, and take about half its time.
    """
    import cv2

    mean = cv2.blur(gray, (block, block), borderType=cv2.BORDER_REPLICATE)
    beyond = cv2.subtract(mean, gray, dst=mean) if dark else cv2.subtract(gray, mean, dst=mean)
    # dark: mean - pixel >= offset (the table's ceil); light: pixel - mean > offset (floor)
    return cv2.threshold(beyond, _OFFSET - 1 if dark else _OFFSET, 255, cv2.THRESH_BINARY, dst=beyond)[1]


def detect_fast(
    classifier: BatchClassifier,
    gray_or_bgr: np.ndarray,
    *,
    min_h: int,
    max_h: int,
    min_score: float,
    polarity: str,
    max_side: int,
    stats: DetectStats,
) -> list[Detection]:
    """The pipeline above on a checked frame; boxes in frame pixels, not yet in reading order.

    ``min_h``/``max_h`` are digit heights in frame pixels; ``stats`` receives the
    seconds spent per stage.
    """
    import cv2

    t0 = time.perf_counter()
    frame = gray_or_bgr
    H, W = frame.shape[:2]
    s = min(1.0, _WORK_MIN_H / min_h, max_side / max(H, W))
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    else:
        frame = np.ascontiguousarray(frame.reshape(H, W))
    if s < 1.0:
        frame = _shrink(frame, s)
    # polarity voted on a half-size copy (smooth light gives no votes); a forced
    # polarity reads no pixels, so it gets the frame as it is
    half = frame
    if polarity == "auto" and min(frame.shape) >= 2:
        half = halve(frame)
    dark = frame_dark_ink(half, polarity)
    lo_h, hi_h = min_h * s, max_h * s
    block = 2 * max(3, round(0.9 * lo_h)) + 1  # the window spans a small digit
    ink = _threshold(frame, block, dark)
    contours, _ = cv2.findContours(ink, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cands: list[tuple[int, int, int, int]] = []
    marks: list[tuple[int, int, int, int]] = []
    # plain Python over the boxes: a frame has a few dozen, too few for numpy to pay
    right, bottom = ink.shape[1] - 1, ink.shape[0] - 1
    least = 0.4 * lo_h
    lo_fill, hi_fill = _FILL
    for x, y, w, h in map(cv2.boundingRect, contours):
        if x <= 1 or y <= 1 or x + w >= right or y + h >= bottom or h < least or h > hi_h or w > hi_h:
            continue  # touches the edge, or not of digit size
        if (
            h >= lo_h
            and w <= _MAX_ASPECT * h
            and lo_fill <= cv2.countNonZero(ink[y : y + h, x : x + w]) / (w * h) <= hi_fill
        ):
            cands.append((x, y, w, h))
        else:
            marks.append((x, y, w, h))
    t1 = time.perf_counter()
    stats.segment = t1 - t0
    if not cands:
        return []
    # The word rule looks at a digit's neighbours on its line: only marks beside a
    # candidate (on its line, within a word's letter spacing) take part.
    line = marks
    if marks:
        c, m = np.array(cands)[None], np.array(marks)[:, None]
        overlap = np.minimum(c[..., 1] + c[..., 3], m[..., 1] + m[..., 3]) - np.maximum(c[..., 1], m[..., 1])
        gap = np.maximum(c[..., 0] - (m[..., 0] + m[..., 2]), m[..., 0] - (c[..., 0] + c[..., 2]))
        near = (overlap >= 0.5 * np.minimum(c[..., 3], m[..., 3])) & (gap <= 0.6 * np.maximum(c[..., 3], m[..., 3]))
        near = near.any(axis=1)
        line = [marks[i] for i in np.flatnonzero(near).tolist()]
    # Gray levels, not the bare mask: MNIST strokes have soft edges. The mask is
    # applied once per frame, so that one call per box scales.
    strength = cv2.bitwise_not(frame) if dark else frame
    crops = _crop_batch(cv2.bitwise_and(strength, ink), cands)
    t2 = time.perf_counter()
    preds = classifier.classify_batch(crops)
    t3 = time.perf_counter()
    dets = accept(classifier, cands, line, preds, min_score, s)
    stats.prepare = t2 - t1 + time.perf_counter() - t3
    stats.infer = t3 - t2
    return dets
