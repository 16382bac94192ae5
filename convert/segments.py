"""Segment and dot-matrix display digits as ink masks: seven-segment, 14-segment, 5x7 dots.

:func:`glyph_cells` draws a row of digits in one style (segment shape: rectangular,
rounded, bevelled or hexagonal; thickness, gaps, italic slant; dot size and shape) as a
mask of the lit segments and one of the unlit "ghost" segments, for
:mod:`convert.displays` to colour as an LCD or LED and photograph. Six, seven and nine
come with and without their tails (:func:`seven_segment`); the 14-segment set adds a
slashed 0, a flagged 1 and a 7 with a diagonal; the middle digit may get a decimal point
or a colon beside it. Every random draw comes from the generator given. Needs OpenCV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["glyph_cells", "seven_segment"]

# Seven segments in a unit cell of width 1 and height 2 (y down); a-g as usual.
_C = {"tl": (0, 0), "tr": (1, 0), "ml": (0, 1), "mr": (1, 1), "bl": (0, 2), "br": (1, 2), "mc": (0.5, 1)}
_SEG7 = {
    "a": ("tl", "tr"),
    "b": ("tr", "mr"),
    "c": ("mr", "br"),
    "d": ("bl", "br"),
    "e": ("ml", "bl"),
    "f": ("tl", "ml"),
    "g": ("ml", "mr"),
}
_DIGIT7 = ["abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg"]
# 14 segments: a, b, c, d, e, f, g1 (left half of g), g2, h (tl diagonal), i (top centre),
# j (tr diagonal), k (bl diagonal), l (bottom centre), m (br diagonal).
_SEG14 = {
    **{k: v for k, v in _SEG7.items() if k != "g"},
    "g1": ("ml", "mc"),
    "g2": ("mc", "mr"),
    "h": ("tl", "mc"),
    "i": ((0.5, 0), "mc"),
    "j": ("tr", "mc"),
    "k": ("bl", "mc"),
    "l": ("mc", (0.5, 2)),
    "m": ("mc", "br"),
}
_DIGIT14 = [
    ("abcdef", "abcdefjk"),
    ("bc", "bcj"),
    ("abg1g2ed",),
    ("abg2cd", "abg1g2cd"),
    ("fg1g2bc",),
    ("afg1g2cd", "afg1md"),
    ("afg1g2edc",),
    ("abc", "ajk", "ajl"),
    ("abcdefg1g2",),
    ("abcdfg1g2",),
]
_DOTS = [
    "01110 10001 10011 10101 11001 10001 01110",
    "00100 01100 00100 00100 00100 00100 01110",
    "01110 10001 00001 00010 00100 01000 11111",
    "11111 00010 00100 00010 00001 10001 01110",
    "00010 00110 01010 10010 11111 00010 00010",
    "11111 10000 11110 00001 00001 10001 01110",
    "00110 01000 10000 11110 10001 10001 01110",
    "11111 00001 00010 00100 01000 01000 01000",
    "01110 10001 10001 01110 10001 10001 01110",
    "01110 10001 10001 01111 00001 00010 01100",
]


def _segment_poly(p: np.ndarray, q: np.ndarray, half: float, style: str, gap: float) -> np.ndarray:
    """Polygon of one segment from ``p`` to ``q`` (pixels), ``half`` its half-thickness."""
    u = q - p
    length = float(np.hypot(*u))
    u = u / max(length, 1e-6)
    n = np.array([-u[1], u[0]])
    if style == "hex":
        p, q = p + u * gap, q - u * gap
        e = min(half, length / 2 - gap)
        pts = [p, p + u * e + n * half, q - u * e + n * half, q, q - u * e - n * half, p + u * e - n * half]
    elif style == "bevel":
        p, q = p + u * (gap + half * 0.5), q - u * (gap + half * 0.5)
        e = half * 0.6
        pts = [
            p + n * half * 0.4,
            p + u * e + n * half,
            q - u * e + n * half,
            q + n * half * 0.4,
            q - n * half * 0.4,
            q - u * e - n * half,
            p + u * e - n * half,
            p - n * half * 0.4,
        ]
    else:  # rect
        p, q = p + u * (gap + half), q - u * (gap + half)
        pts = [p + n * half, q + n * half, q - n * half, p - n * half]
    return np.array(pts, np.float32)


def _draw_segments(
    img: np.ndarray,
    segs: dict[str, tuple],
    names: Sequence[str],
    origin: tuple[float, float],
    size: tuple[float, float],
    *,
    half: float,
    style: str,
    gap: float,
    slant: float,
) -> None:
    """Draw segments ``names`` (keys of ``segs``) into ``img`` (float, 1 = lit), 4x supersampled."""
    import cv2

    ox, oy = origin
    w, h = size

    def pt(c: object) -> np.ndarray:
        x, y = _C[c] if isinstance(c, str) else c
        px, py = ox + x * w, oy + y * h / 2
        return np.array([px + (oy + h - py) * slant, py], np.float64)

    for name in names:
        a, b = segs[name]
        p, q = pt(a), pt(b)
        if style == "round":
            u = (q - p) / max(float(np.hypot(*(q - p))), 1e-6)
            p, q = p + u * (gap + half), q - u * (gap + half)
            cv2.line(
                img,
                tuple(np.rint(p * 16).astype(int)),
                tuple(np.rint(q * 16).astype(int)),
                1.0,
                max(1, int(round(half * 8))),
                cv2.LINE_AA,
                2,
            )
        else:
            poly = _segment_poly(p, q, half, style, gap)
            cv2.fillPoly(img, [np.rint(poly * 64).astype(np.int32)], 1.0, cv2.LINE_AA, 4)


def _split_names(spec: str) -> list[str]:
    """``"abg1g2ed"`` -> ``["a", "b", "g1", "g2", "e", "d"]``."""
    out, i = [], 0
    while i < len(spec):
        if i + 1 < len(spec) and spec[i + 1] in "12":
            out.append(spec[i : i + 2])
            i += 2
        else:
            out.append(spec[i])
            i += 1
    return out


def seven_segment(digit: int, rng: np.random.Generator) -> list[str]:
    """The lit segments of ``digit``: 6, 7 and 9 with or without their tails.

    >>> sorted(seven_segment(8, np.random.default_rng(0)))
    ['a', 'b', 'c', 'd', 'e', 'f', 'g']
    """
    segs = list(_DIGIT7[digit])
    if digit == 6 and rng.random() < 0.3:
        segs.remove("a")
    elif digit == 9 and rng.random() < 0.3:
        segs.remove("d")
    elif digit == 7 and rng.random() < 0.3:
        segs.append("f")
    return segs


def glyph_cells(
    digits: Sequence[int], kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """A row of segment or dot digits: (lit mask, ghost mask, box of the middle digit (x, y, w, h)).

    Masks are float32 at 4x the drawing scale (a digit about 100 px tall after the
    4x downscale done by the caller's resize).
    """
    import cv2

    h = 100.0
    w = h * rng.uniform(0.42, 0.62)
    pitch = w * rng.uniform(1.25, 1.7)
    slant = math.tan(math.radians(rng.uniform(0, 15))) if rng.random() < 0.5 else 0.0
    half = h * rng.uniform(0.045, 0.085)
    gap = h * rng.uniform(0.0, 0.03)
    style = str(rng.choice(["rect", "round", "bevel", "hex"]))
    W = int(pitch * len(digits) + w + 2 * h * slant + 80)
    H = int(h + 80)
    lit = np.zeros((H * 4, W * 4), np.float32)
    ghost = np.zeros_like(lit)
    mid = len(digits) // 2
    x0 = 40 + h * slant
    r_dot = h / 7 * rng.uniform(0.32, 0.48)  # dot matrix: dot radius and shape
    square = rng.random() < 0.4
    for i, d in enumerate(digits):
        ox, oy = x0 + i * pitch, 40.0
        if kind == "dots":
            rows = _DOTS[d].split()
            dp = h / 7
            for ry, row in enumerate(rows):
                for rx, bit in enumerate(row):
                    cx = ox + (rx + 0.5) * dp + (oy + h - (oy + (ry + 0.5) * dp)) * slant
                    cy = oy + (ry + 0.5) * dp
                    tgt = lit if bit == "1" else ghost
                    c = (int(round(cx * 16)), int(round(cy * 16)))
                    rr = int(round(r_dot * 16))
                    if square:
                        cv2.rectangle(tgt, (c[0] - rr, c[1] - rr), (c[0] + rr, c[1] + rr), 1.0, -1, cv2.LINE_AA, 2)
                    else:
                        cv2.circle(tgt, c, rr, 1.0, -1, cv2.LINE_AA, 2)
            continue
        if kind == "seg14":
            spec = _DIGIT14[d][int(rng.integers(len(_DIGIT14[d])))]
            on = _split_names(spec)
            allsegs = _SEG14
            hh = half * 0.8
        else:
            on = seven_segment(d, rng)
            allsegs = _SEG7
            hh = half
        off = [s for s in allsegs if s not in on]
        kw = dict(half=hh, style=style, gap=gap, slant=slant)
        _draw_segments(lit, allsegs, on, (ox, oy), (w, h), **kw)
        _draw_segments(ghost, allsegs, off, (ox, oy), (w, h), **kw)
        if i == mid and rng.random() < 0.25:  # decimal point or colon beside the digit
            dot = half * rng.uniform(1.0, 1.6)
            if rng.random() < 0.6:
                c = (ox + w + pitch * 0.12, oy + h - dot)
                cs = [c]
            else:
                side = ox - (pitch - w) / 2 if rng.random() < 0.5 else ox + w + (pitch - w) / 2
                cs = [(side + (h - yy) * slant, oy + yy) for yy in (h * 0.3, h * 0.7)]
            for cx, cy in cs:
                cv2.circle(lit, (int(cx * 16), int(cy * 16)), int(dot * 16), 1.0, -1, cv2.LINE_AA, 2)
    lit = cv2.resize(lit, (W, H), interpolation=cv2.INTER_AREA)
    ghost = cv2.resize(ghost, (W, H), interpolation=cv2.INTER_AREA)
    mx = x0 + mid * pitch
    return (
        np.clip(lit, 0, 1),
        np.clip(ghost, 0, 1) * (1 - np.clip(lit, 0, 1)),
        (int(mx), 40, int(w + h * slant), int(h)),
    )
