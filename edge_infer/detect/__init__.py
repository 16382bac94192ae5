"""Frames -> digits: segmentation, the full and fast pipelines, the word rules, numbers.

The pipelines take any :class:`BatchClassifier` (an object with ``classify_batch``
and ``has_reject_class``, such as :class:`edge_infer.DigitRecognizer`); this
package never imports the recogniser. OpenCV is imported on first use.

Thread safety: the functions hold no state; they are as thread-safe as the
classifier passed in (a ``DigitRecognizer`` is).
"""

from __future__ import annotations

import time

import numpy as np

from ..results import Detection, DetectStats, Number
from .fast import detect_fast
from .frames import Roi, check_frame, check_roi, frame_gray, positive_int, to_bgr
from .full import detect_full
from .numbers import group_numbers
from .text import BatchClassifier, reading_order

__all__ = ["DEFAULT_MIN_SCORE", "BatchClassifier", "Roi", "detect", "group_numbers", "read_numbers"]

POLARITIES = ("auto", "dark", "light")
#: The least probability a digit is reported with. The shipped model spreads its answers
#: over handwriting, print and displays: at 0.6 it finds the handwriting of the scene
#: benchmark as the previous, handwriting-only model did at 0.85 (recall 0.979, precision
#: 0.987 on 120 frames), and a printed "1" (which it scores 0.69-0.77) is not dropped.
DEFAULT_MIN_SCORE = 0.6


def detect(
    classifier: BatchClassifier,
    frame: np.ndarray,
    *,
    min_height: int = 16,
    max_height: int | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    polarity: str = "auto",
    max_side: int = 1280,
    min_contrast: float = 0.12,
    fast: bool = False,
    roi: Roi | None = None,
    color: str = "bgr",
    stats: DetectStats | None = None,
) -> list[Detection]:
    """Finds and reads the digits in a camera frame.

    Args:
        classifier: Classifies the crops, one batch per frame (a ``DigitRecognizer``).
        frame: uint8 ``(h, w)`` gray, ``(h, w, 3)`` or ``(h, w, 4)`` colour, any size
            (see-through BGRA is laid on paper by :func:`edge_infer.image.preprocess.flatten_alpha`).
        min_height: Smallest digit height to report, in frame pixels.
        max_height: Largest digit height, in frame pixels; None for half the searched
            height (segmentation is built for digits up to about a third).
        min_score: Drop digits the model reads with a lower probability.
        polarity: ``"auto"``, ``"dark"`` (dark ink on light paper) or ``"light"``
            (light on dark, e.g. chalk on a board, an LED display).
        max_side: Frames (or regions) with a longer side are shrunk to this for
            segmentation (boxes are mapped back); digits under ~10 px after it are lost.
        min_contrast: Weakest ink kept, as a fraction of the paper's brightness
            (full pipeline only).
        fast: Use the fast pipeline (:mod:`edge_infer.detect.fast`): several times
            quicker, but no line or grid erasure, no merging of broken strokes and
            less tolerance of uneven light.
        roi: ``(x, y, w, h)``: search only this region (clipped to the frame); boxes
            still come back in frame pixels. Time falls with the region's area.
        color: Channel order of a colour frame: ``"bgr"`` (OpenCV) or ``"rgb"``
            (Picamera2's ``RGB888`` / ``XBGR8888`` arrays, PIL; a fourth byte is padding).
        stats: Receives the seconds this frame spent per stage.

    Returns:
        Detections in reading order (top to bottom, then left to right). Empty
        for a blank, tiny or digit-free frame.

    Raises:
        TypeError: ``frame`` is None or not a numpy array.
        ValueError: Wrong dtype, rank or channel count (e.g. a 4-D batch), or a bad option.
    """
    frame = check_frame(frame)
    min_height = positive_int("min_height", min_height)
    max_side = positive_int("max_side", max_side)
    if max_height is not None:
        max_height = positive_int("max_height", max_height)
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be 'auto', 'dark' or 'light', got {polarity!r}")
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, not {type(fast).__name__}")
    ox = oy = 0
    if roi is not None:
        ox, oy, rw, rh = check_roi(roi, frame.shape)
        frame = frame[oy : oy + rh, ox : ox + rw]
    frame = to_bgr(frame, color)
    if stats is None:
        stats = DetectStats()
    stats.segment = stats.prepare = stats.infer = 0.0
    H, W = frame.shape[:2]
    if min(H, W) < 8:
        return []
    top = max_height if max_height is not None else H // 2
    if top < min_height:
        return []
    score = float(min_score)
    if fast:
        found = detect_fast(
            classifier,
            frame,
            min_h=min_height,
            max_h=top,
            min_score=score,
            polarity=polarity,
            max_side=max_side,
            stats=stats,
        )
    else:
        found = detect_full(
            classifier,
            frame,
            min_h=min_height,
            max_h=top,
            min_score=score,
            polarity=polarity,
            max_side=max_side,
            min_contrast=float(min_contrast),
            stats=stats,
        )
    if ox or oy:
        found = [Detection((d.box[0] + ox, d.box[1] + oy, d.box[2], d.box[3]), d.digit, d.score) for d in found]
    t = time.perf_counter()
    dets = reading_order(found)
    stats.prepare += time.perf_counter() - t
    return dets


def read_numbers(
    classifier: BatchClassifier,
    frame: np.ndarray,
    *,
    max_gap: float = 0.8,
    min_height: int = 16,
    max_height: int | None = None,
    min_score: float = DEFAULT_MIN_SCORE,
    polarity: str = "auto",
    max_side: int = 1280,
    min_contrast: float = 0.12,
    fast: bool = False,
    roi: Roi | None = None,
    color: str = "bgr",
    stats: DetectStats | None = None,
) -> list[Number]:
    """Reads the numbers in a frame: digits on one line, close together, left to right.

    Args:
        classifier: As for :func:`detect`.
        frame: As for :func:`detect`.
        max_gap: Largest gap between two digits of one number, as a fraction of
            the digits' height.
        min_height, max_height, min_score, polarity, max_side, min_contrast, fast, roi,
            color, stats: As for :func:`detect`.

    Returns:
        Numbers in reading order; a lone digit is a one-digit number. A decimal point
        between two digits of a line is part of the reading (``"247.00"``).

    Raises:
        TypeError, ValueError: As for :func:`detect`.
    """
    if not 0.0 <= float(max_gap) <= 10.0:
        raise ValueError(f"max_gap must be from 0 to 10 (digit heights), got {max_gap!r}")
    dets = detect(
        classifier,
        frame,
        min_height=min_height,
        max_height=max_height,
        min_score=min_score,
        polarity=polarity,
        max_side=max_side,
        min_contrast=min_contrast,
        fast=fast,
        roi=roi,
        color=color,
        stats=stats,
    )
    gray = frame_gray(frame, color) if len(dets) > 1 else None
    return group_numbers(dets, max_gap=max_gap, gray=gray)
