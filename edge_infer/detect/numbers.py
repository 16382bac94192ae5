"""Digits found in a frame -> numbers: the digits of one line, close together, left to right."""

from __future__ import annotations

from ..results import Detection, Number
from .text import reading_order, words

__all__ = ["group_numbers"]


def group_numbers(dets: list[Detection], *, max_gap: float = 0.8) -> list[Number]:
    """Groups detections into :class:`~edge_infer.results.Number` objects, in reading order.

    Args:
        dets: Digits found in one frame.
        max_gap: Largest gap between two digits of one number, as a fraction of their height.

    Returns:
        Numbers in reading order; a lone digit is a one-digit number.
    """
    numbers = []
    for g in words([d.box for d in dets], max_gap):
        ds = tuple(sorted((dets[i] for i in g), key=lambda d: d.box[0]))
        x0 = min(d.box[0] for d in ds)
        y0 = min(d.box[1] for d in ds)
        x1 = max(d.box[0] + d.box[2] for d in ds)
        y1 = max(d.box[1] + d.box[3] for d in ds)
        numbers.append(
            Number((x0, y0, x1 - x0, y1 - y0), "".join(str(d.digit) for d in ds), ds, tuple(d.score for d in ds))
        )
    return reading_order(numbers)
