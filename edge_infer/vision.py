"""Camera frames -> digit boxes: segmentation, MNIST-style crops, one batch per frame.

The pipeline, per frame (OpenCV is imported on first use, not with the package;
steps 1-6 live in :mod:`edge_infer.segment`, 7-8 here):

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from .fastpath import detect_fast
from .preprocess import MNIST_BOX, MNIST_SIZE, center_of_mass_place, flatten_alpha
from .segment import _Candidate, _contrast, _gray, _own, _segment

if TYPE_CHECKING:
    from .recognizer import Detection, DigitRecognizer, Prediction

__all__ = ["Number", "detect", "group_numbers", "read_numbers"]


class _HasBox(Protocol):
    @property
    def box(self) -> tuple[int, int, int, int]: ...


_Boxed = TypeVar("_Boxed", bound=_HasBox)  # Detection or Number


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
        own = _own(labels, (x0, y0, x1 - x0, y1 - y0), c.labels)
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

    x, y, w, h = cv2.boundingRect((ink > 0.25).view(np.uint8))
    if w == 0 or h == 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    crop = ink[y : y + h, x : x + w]
    scale = MNIST_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sm = small > 0.4  # stroke width: ink area over half its boundary length (outside is background)
    area = int(np.count_nonzero(sm))
    edges = (
        int(np.count_nonzero(sm[1:] != sm[:-1]) + np.count_nonzero(sm[:, 1:] != sm[:, :-1]))
        + int(np.count_nonzero(sm[0]) + np.count_nonzero(sm[-1]))
        + int(np.count_nonzero(sm[:, 0]) + np.count_nonzero(sm[:, -1]))
    )
    if area and edges and 2.0 * area / edges < 1.5:
        small = cv2.dilate(cv2.copyMakeBorder(small, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0), _K3)
    elif thin_bold and area and edges and 2.0 * area / edges > 3.5:
        # Bold print (or a marker) seen large: strokes over 3.5 px at this scale are
        # thicker than MNIST's pen ever was, and a bold "1" with a foot then reads as
        # "2". One 2x2 erosion brings them back into MNIST's range.
        small = cv2.erode(small, _K2)
    _, peak, _, _ = cv2.minMaxLoc(small)
    if peak <= 0:
        return np.zeros((MNIST_SIZE, MNIST_SIZE), np.uint8)
    small = np.minimum(small * (255.0 / peak), 255.0)
    mo = cv2.moments(small)
    centre = (mo["m01"] / mo["m00"], mo["m10"] / mo["m00"])
    return np.rint(center_of_mass_place(small, MNIST_SIZE, centre=centre)).astype(np.uint8)


_K3 = np.ones((3, 3), np.uint8)
_K2 = np.ones((2, 2), np.uint8)


# --------------------------------------------------------------------------- rejection


def _words(boxes: list[tuple[int, int, int, int]], gap_ratio: float = 0.6) -> list[list[int]]:
    """Groups boxes into runs on one line, left to right, with gaps under ``gap_ratio`` of their height.

    A box joins the first run (in the order runs were started) whose last box it
    follows closely. Boxes come left to right, so a run whose end lies further back
    than the tallest box still to come could reach is closed and no longer searched:
    the same runs as trying every run, with far fewer tries on frames with many marks.
    """
    n = len(boxes)
    order = sorted(range(n), key=lambda i: boxes[i][0])
    # the tallest box from each position on: no later box has a larger reach
    reach = [0.0] * (n + 1)
    for k in range(n - 1, -1, -1):
        r = gap_ratio * boxes[order[k]][3]
        reach[k] = r if r > reach[k + 1] else reach[k + 1]
    groups: list[list[int]] = []
    # runs a later box may still join, in the order they were started:
    # [right edge, top, bottom, height] of the run's last box, and the run
    open_: list[list[Any]] = []
    for k, i in enumerate(order):
        x, y, w, h = boxes[i]
        r, bottom = reach[k], y + h
        j = 0
        while j < len(open_):
            run = open_[j]
            right, top, low_edge, lh, group = run
            gap = x - right
            if gap > r and gap > gap_ratio * lh:
                del open_[j]  # out of reach of this box and of every later one
                continue
            if h > lh:
                ref, low = h, lh
            else:
                ref, low = lh, h
            overlap = (bottom if bottom < low_edge else low_edge) - (y if y > top else top)
            if gap <= gap_ratio * ref and low >= 0.45 * ref and overlap >= 0.5 * low:
                group.append(i)
                run[0], run[1], run[2], run[3] = x + w, y, bottom, h
                break  # placed: the later runs stay open unchecked (closing only saves time)
            j += 1
        else:
            groups.append([i])
            open_.append([x + w, y, bottom, h, groups[-1]])
    return groups


def _reject_text(boxes: list[tuple[int, int, int, int]], ok: list[bool], other: list[bool]) -> list[bool]:
    """Drops the digits that belong to words; returns the new ``ok`` flags.

    ``ok`` says which marks were read as digits; ``other`` which are surely not
    digits (the model's "not a digit" class won, or the mark is not digit-shaped).
    Marks on a line with gaps under 0.6 of their height form a run. In a run with
    other marks (letters), a stretch of digits survives only when a word space
    (over 0.3 of the run's height) sets it off from them: "Room 317" keeps 317,
    the "oo" of "Room" and the "l" of "Hello" go. A run without other marks is a
    number and stays whole; marks read with a low score neither count as letters
    nor survive.
    """
    ok = list(ok)
    if not any(other):
        return ok
    for g in _words(boxes, 0.6):
        if len(g) < 2 or not any(other[i] for i in g):
            continue
        bs = [boxes[i] for i in g]
        tallest = max(b[3] for b in bs)
        start = 0
        while start < len(g):
            if not ok[g[start]]:
                start += 1
                continue
            end = start
            while end + 1 < len(g) and ok[g[end + 1]]:
                end += 1
            before = (
                start == 0
                or not other[g[start - 1]]
                or bs[start][0] - (bs[start - 1][0] + bs[start - 1][2]) > 0.3 * tallest
            )
            after = (
                end == len(g) - 1 or not other[g[end + 1]] or bs[end + 1][0] - (bs[end][0] + bs[end][2]) > 0.3 * tallest
            )
            if not (before and after):
                for k in range(start, end + 1):
                    ok[g[k]] = False
            start = end + 1
    return ok


def _reject_lowercase(boxes: list[tuple[int, int, int, int]], ok: list[bool]) -> list[bool]:
    """Drops the marks that belong to words, for a digits-only model (no "not a digit" class).

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


def _accept(
    rec: DigitRecognizer,
    boxes: list[tuple[int, int, int, int]],
    marks: list[tuple[int, int, int, int]],
    preds: list[Prediction],
    min_score: float,
    scale: float,
    readable: list[bool] | None = None,
) -> list[Detection]:
    """Candidates read as digits, less those in words, as detections in frame pixels.

    ``boxes`` are the candidates' (working-image pixels, one prediction each),
    ``marks`` the other letter-sized marks; ``scale`` is working size over frame size;
    ``readable`` marks candidates whose crop has ink (all, when None). Shared by the
    full and the fast pipeline.
    """
    from .recognizer import Detection

    ok = [p.is_digit and p.score >= min_score for p in preds]
    if readable is not None:
        ok = [a and b for a, b in zip(ok, readable)]
    ok += [False] * len(marks)
    if rec.has_reject_class:
        ok = _reject_text(boxes + marks, ok, [not p.is_digit for p in preds] + [True] * len(marks))
    else:  # no "not a digit" answer: letters are told by their shape (x-height) instead
        ok = _reject_lowercase(boxes + marks, ok)
    inv = 1.0 / scale
    return [
        Detection((round(x * inv), round(y * inv), max(1, round(w * inv)), max(1, round(h * inv))), p.digit, p.score)
        for (x, y, w, h), p, good in zip(boxes, preds, ok)
        if good
    ]


def _reading_order(dets: list[_Boxed]) -> list[_Boxed]:
    """Things with a ``box``, top to bottom by text line, then left to right."""
    if not dets:
        return dets
    by_y = sorted(dets, key=lambda d: d.box[1] + d.box[3] / 2)
    lines: list[list[_Boxed]] = []
    cy_sum = h_sum = 0.0  # the current line's sums of box centres and heights, in order
    for d in by_y:
        _, y, _, h = d.box
        cy = y + h / 2
        if lines and cy - cy_sum / len(lines[-1]) <= 0.5 * max(h_sum / len(lines[-1]), h):
            lines[-1].append(d)
            cy_sum += cy
            h_sum += h
        else:
            lines.append([d])
            cy_sum, h_sum = cy, h
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
    fast: bool = False,
    timings: dict[str, float] | None = None,
) -> list[Detection]:
    """Finds and reads the digits in a camera frame.

    Args:
        rec: The recogniser that classifies the crops (one batch per frame).
        frame: uint8 ``(h, w)`` gray, ``(h, w, 3)`` BGR or ``(h, w, 4)`` BGRA, any size
            (see-through BGRA is laid on paper by :func:`edge_infer.preprocess.flatten_alpha`).
        min_height: Smallest digit height to report, in frame pixels.
        max_height: Largest digit height, in frame pixels; None for half the frame's
            height (segmentation is built for digits up to about a third).
        min_score: Drop digits the model reads with a lower probability.
        polarity: ``"auto"``, ``"dark"`` (dark ink on light paper) or ``"light"``
            (light on dark, e.g. chalk on a board).
        max_side: Frames with a longer side are shrunk to this for segmentation
            (boxes are mapped back); digits under ~10 px after the shrink are lost.
        min_contrast: Weakest ink kept, as a fraction of the paper's brightness
            (full pipeline only).
        fast: Use the fast pipeline (:mod:`edge_infer.fastpath`): several times
            quicker, but no line or grid erasure, no merging of broken strokes and
            less tolerance of uneven light; ``edge-infer bench`` reports both.
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

    t0 = time.perf_counter()
    frame = _check_frame(frame)
    if frame.ndim == 3 and frame.shape[2] == 4 and frame[:, :, 3].min() < 255:
        frame = flatten_alpha(frame)  # a camera's BGRA is opaque; a transparent PNG's is not
    min_height = _positive_int("min_height", min_height)
    max_side = _positive_int("max_side", max_side)
    if max_height is not None:
        max_height = _positive_int("max_height", max_height)
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be in [0, 1], got {min_score!r}")
    if polarity not in ("auto", "dark", "light"):
        raise ValueError(f"polarity must be 'auto', 'dark' or 'light', got {polarity!r}")
    if not isinstance(fast, bool):
        raise TypeError(f"fast must be True or False, not {type(fast).__name__}")
    stages = {"segment": 0.0, "prepare": 0.0, "infer": 0.0}
    if timings is not None:
        timings.update(stages)
    H, W = frame.shape[:2]
    if min(H, W) < 8:
        return []
    if fast:
        top = max_height if max_height is not None else H // 2
        found = (
            []
            if top < min_height
            else detect_fast(
                rec,
                frame,
                min_h=min_height,
                max_h=top,
                min_score=float(min_score),
                polarity=polarity,
                max_side=max_side,
                stages=stages,
            )
        )
        if timings is not None:
            timings.update(stages)
        return _reading_order(found)
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
    dets = _accept(rec, [c.box for c in cands], marks, preds, min_score, scale, [bool(c.any()) for c in crops])
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
