"""Which marks are digits: the word and line rules, and reading order.

Shared by the full and the fast pipeline. A mark read as a digit is still not
reported when it belongs to a word: digits in a run of close marks that has letters
in it are letters too ("oo" in "Room"), unless a word space sets them apart. With a
digits-only model (no "not a digit" class) words are told by their lower-case
letters instead (marks that stop at the x-height).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, TypeVar

import numpy as np

from ..results import Detection, Prediction

__all__ = [
    "BatchClassifier",
    "Boxed",
    "HasBox",
    "accept",
    "reading_order",
    "reject_letter_lookalikes",
    "reject_lowercase",
    "reject_text",
    "words",
]


class BatchClassifier(Protocol):
    """What the detection pipelines need of a model: one batch of crops in, one prediction each out.

    :class:`edge_infer.DigitRecognizer` is one; so is anything with these two members.
    """

    @property
    def has_reject_class(self) -> bool:
        """True when the model answers "not a digit" (``Prediction.is_digit`` can be False)."""
        ...

    def classify_batch(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Prediction]:
        """An ``(N, 28, 28)`` uint8 batch of MNIST-layout crops -> N predictions, in order."""
        ...


class HasBox(Protocol):
    @property
    def box(self) -> tuple[int, int, int, int]: ...


Boxed = TypeVar("Boxed", bound=HasBox)  # Detection or Number


def words(boxes: list[tuple[int, int, int, int]], gap_ratio: float = 0.6) -> list[list[int]]:
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


def reject_text(boxes: list[tuple[int, int, int, int]], ok: list[bool], other: list[bool]) -> list[bool]:
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
    for g in words(boxes, 0.6):
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


def reject_lowercase(boxes: list[tuple[int, int, int, int]], ok: list[bool]) -> list[bool]:
    """Drops the marks that belong to words, for a digits-only model (no "not a digit" class).

    Marks on a line with gaps under 0.6 of their height form a run. A run with
    lower-case letters (two or more marks standing on the baseline and stopping at
    the x-height, at least a third of the run) is text: only a stretch of two or more
    full-height digits set off from the letters by a word space survives (a label
    beside its number: "Room 317"). A run of close marks that are mostly not digits
    is text too.
    """
    ok = list(ok)
    for g in words(boxes, 0.6):
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
            for sub in words(bs, 0.25):  # tight runs: words, or a number with a weak digit
                if len(sub) >= 2 and sum(ok[g[k]] for k in sub) < 0.5 * len(sub):
                    for k in sub:
                        ok[g[k]] = False
    return ok


def accept(
    classifier: BatchClassifier,
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
    ok = [p.is_digit and p.score >= min_score for p in preds]
    if readable is not None:
        ok = [a and b for a, b in zip(ok, readable)]
    ok += [False] * len(marks)
    if classifier.has_reject_class:
        ok = reject_text(boxes + marks, ok, [not p.is_digit for p in preds] + [True] * len(marks))
    else:  # no "not a digit" answer: letters are told by their shape (x-height) instead
        ok = reject_lowercase(boxes + marks, ok)
    digits = [p.digit for p in preds] + [-1] * len(marks)
    ok = reject_letter_lookalikes(boxes + marks, ok, digits)
    inv = 1.0 / scale
    return [
        Detection((round(x * inv), round(y * inv), max(1, round(w * inv)), max(1, round(h * inv))), p.digit, p.score)
        for (x, y, w, h), p, good in zip(boxes, preds, ok)
        if good
    ]


_LOOKALIKES = (0, 1, 5)  # o O, l I i ( ), s S read as digits


def reject_letter_lookalikes(boxes: list[tuple[int, int, int, int]], ok: list[bool], digits: list[int]) -> list[bool]:
    """Drops runs of digits that are letters of running text; returns the new ``ok`` flags.

    A run of marks read only as 0, 1 and 5 is an "o", "l", "I", "s" or "oil" when it
    stands in a line of words (letter-sized marks within a word space or two on both
    sides), or when its marks differ in height like a word's do (an x-height "o" beside
    an "l"); any run uneven so with words on both sides is a word too ("is" read "15").
    A number on a label ("Room 101") has words on one side only and keeps its digits.
    """
    kept = [i for i, good in enumerate(ok) if good]
    if not kept:
        return ok
    ok = list(ok)
    others = [i for i, good in enumerate(ok) if not good]
    for run in words([boxes[i] for i in kept], 0.6):
        idx = [kept[k] for k in run]
        lookalikes = all(digits[i] in _LOOKALIKES for i in idx)
        hs = [boxes[i][3] for i in idx]
        x0 = min(boxes[i][0] for i in idx)
        x1 = max(boxes[i][0] + boxes[i][2] for i in idx)
        y0 = min(boxes[i][1] for i in idx)
        y1 = max(boxes[i][1] + boxes[i][3] for i in idx)
        h = max(hs)
        uneven = len(idx) > 1 and max(hs) > 1.3 * min(hs)
        left = right = False
        for j in others:
            bx, by, bw, bh = boxes[j]
            if bh < 0.3 * h or bh > 1.6 * h or min(y1, by + bh) - max(y0, by) < 0.5 * min(bh, y1 - y0):
                continue  # not a letter of this line
            if 0 <= x0 - (bx + bw) <= 1.5 * h:
                left = True
            elif 0 <= bx - x1 <= 1.5 * h:
                right = True
        if (lookalikes and (uneven or (left and right))) or (uneven and left and right):
            for i in idx:
                ok[i] = False
    return ok


def reading_order(dets: list[Boxed]) -> list[Boxed]:
    """Things with a ``box``, top to bottom by text line, then left to right."""
    if not dets:
        return dets
    by_y = sorted(dets, key=lambda d: d.box[1] + d.box[3] / 2)
    lines: list[list[Boxed]] = []
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
