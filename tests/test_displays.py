"""Displays and counters in frames: segments grouped into digits, decimal points, the display scenes' floor."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.detect import read_numbers
from edge_infer.detect.numbers import find_decimal_point
from edge_infer.detect.segments import group_segments

from .conftest import paper as _paper
from .displays import KINDS, make_display, reading_right
from .scenes import match

cv2 = pytest.importorskip("cv2")

TEST_SEED = 40_000  # the benchmark draws from 30_000 on


_SEGS = {0: "abcdef", 4: "fgbc", 8: "abcdefg"}


def _sevenseg_row(digits: str, italic: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A uint8 ink mask of 60 px seven-segment digits (36 px wide, 8 px strokes, 3 px gaps) and their boxes."""
    h, w, t, g = 60, 36, 8, 3
    mask = np.zeros((120, 60 + 52 * len(digits)), np.uint8)
    spans = {  # segment -> (x0, y0, x1, y1) in a digit's own box
        "a": (t + g, 0, w - t - g, t),
        "g": (t + g, (h - t) // 2, w - t - g, (h + t) // 2),
        "d": (t + g, h - t, w - t - g, h),
        "f": (0, t + g, t, h // 2 - g),
        "b": (w - t, t + g, w, h // 2 - g),
        "e": (0, h // 2 + g, t, h - t - g),
        "c": (w - t, h // 2 + g, w, h - t - g),
    }
    boxes: list[tuple[int, int, int, int]] = []
    for i, d in enumerate(digits):
        ox, oy = 30 + 52 * i, 30
        for seg in _SEGS[int(d)]:
            x0, y0, x1, y1 = spans[seg]
            mask[oy + y0 : oy + y1, ox + x0 : ox + x1] = 255
        boxes.append((ox, oy, w, h))
    if italic:
        shear = np.float32([[1, -np.tan(np.deg2rad(italic)), 60 * np.tan(np.deg2rad(italic))], [0, 1, 0]])
        mask = cv2.warpAffine(mask, shear, (mask.shape[1] + 20, mask.shape[0]), flags=cv2.INTER_NEAREST)
    return mask, boxes


def _groups(mask: np.ndarray) -> list:
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return group_segments(labels, stats[:, :4], 16, 110)


@pytest.mark.parametrize("italic", [0.0, 10.0], ids=["upright", "italic"])
def test_the_segments_of_each_digit_group_into_one_and_neighbours_stay_apart(italic):
    mask, _ = _sevenseg_row("8048", italic=italic)
    groups = _groups(mask)
    # per digit cell (52 px apart), the group with the most segments
    best: dict[int, int] = {}
    for g in groups:
        cell = round((g.box[0] + g.box[2] / 2 - 48) / 52)
        best[cell] = max(best.get(cell, 0), len(g.labels))
    assert [best.get(c, 0) for c in range(4)] == [7, 6, 4, 7]  # 8, 0, 4, 8: every segment, in its own digit
    assert max(g.box[2] for g in groups) <= 46  # no group spans two digits (a digit is 36-42 px wide)


def test_whole_handwritten_strokes_never_group():
    """A group needs fragments: two full-height strokes side by side ("11") stay two marks."""
    mask = np.zeros((120, 120), np.uint8)
    cv2.line(mask, (40, 20), (40, 90), 255, 6)
    cv2.line(mask, (60, 20), (60, 90), 255, 6)
    assert _groups(mask) == []


def _printed_reading(text: str, dot_between: int | None) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    frame = _paper()
    x, boxes = 120, []
    for i, ch in enumerate(text):
        cv2.putText(frame, ch, (x, 260), cv2.FONT_HERSHEY_SIMPLEX, 2.6, (25, 25, 25), 7, cv2.LINE_AA)
        (w, h), _ = cv2.getTextSize(ch, cv2.FONT_HERSHEY_SIMPLEX, 2.6, 7)
        boxes.append((x, 260 - h, w, h))
        x += w + 14
        if dot_between is not None and i == dot_between:
            cv2.rectangle(frame, (x + 2, 248), (x + 13, 259), (25, 25, 25), -1)
            x += 26
    return frame, boxes


def test_a_decimal_point_is_part_of_the_reading(rec):
    frame, _ = _printed_reading("24700", dot_between=2)
    numbers = read_numbers(rec, frame)
    assert [n.value for n in numbers] == ["247.00"]
    assert numbers[0].number == pytest.approx(247.0) and numbers[0].to_dict()["value"] == "247.00"


def test_no_point_where_there_is_none(rec):
    frame, boxes = _printed_reading("2470", dot_between=None)
    assert [n.value for n in read_numbers(rec, frame)] == ["2470"]
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    assert find_decimal_point(gray, boxes[1], boxes[2]) is None


@pytest.fixture(scope="module")
def display_results(rec):
    out = {}
    for k, kind in enumerate(KINDS):
        right = tp = fp = fn = 0
        for i in range(12):
            sc = make_display(TEST_SEED + 1000 * k + i, kind=kind)
            numbers = rec.read_numbers(sc.frame)
            r = match([d for n in numbers for d in n.digits], sc.digits)
            right += reading_right(numbers, sc)
            tp, fp, fn = tp + r.tp, fp + r.fp, fn + r.fn
        out[kind] = (right / 12, tp / max(1, tp + fn), tp / max(1, tp + fp))
    return out


def test_display_scenes_floor(display_results):
    """A regression floor on 36 generated display photos (bench/displays_bench.py has the full figures)."""
    # (readings right, digit recall, precision), a step under what the shipped model measures here
    floors = {"lcd": (0.33, 0.65, 0.75), "led": (0.33, 0.65, 0.8), "counter": (0.08, 0.25, 0.75)}
    for kind, (right, recall, precision) in display_results.items():
        f_right, f_recall, f_precision = floors[kind]
        assert right >= f_right and recall >= f_recall and precision >= f_precision, (kind, right, recall, precision)


def test_running_text_is_not_read_as_ones_and_zeros(rec):
    """Letters that look like digits (l, I, o, O) in lines of words are letters; a label's number stays."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", 34)
    img = Image.new("L", (1100, 420), 235)
    draw = ImageDraw.Draw(img)
    lines = (
        "I said the oil and the lol, IO and OIL are words",
        "it was a lazy dog and I look at it, Illinois too",
        "Room 407",
    )
    for i, line in enumerate(lines):
        draw.text((30, 30 + 110 * i), line, fill=30, font=font)
    frame = cv2.cvtColor(np.array(img), cv2.COLOR_GRAY2BGR)
    dets = rec.detect(frame)
    in_text = [d for d in dets if d.box[1] < 230]
    assert len(in_text) <= 1, in_text  # 0 or 1 read from letters, at most one slip
    assert [n.value for n in rec.read_numbers(frame) if n.box[1] > 230] == ["407"]
