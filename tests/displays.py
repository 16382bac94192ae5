"""Camera photos of displays and counters, with the truth: where each digit is, and the reading.

Three kinds, drawn from one seed (the same frame on every machine):

- ``lcd``: a reflective or backlit LCD (grey, green, blue or amber glass in a plastic
  housing), dark seven-segment digits with unlit "ghost" segments, upright or italic,
  a decimal point, and a label word beside it ("LITRES", "kWh"...);
- ``led``: a dark panel with glowing red, green, blue or amber seven-segment digits
  (light on dark), faint unlit segments, a decimal point;
- ``counter``: a mechanical counter: a row of drum windows (white digits on black, or
  black on white, the last drum sometimes red) in a frame, a unit beside it.

Then what a phone or a Pi camera does to it: perspective tilt up to 20 degrees, a glare
spot, uneven light, defocus, noise, JPEG. The seven-segment renderer here is written
for the benchmark and shares nothing with the training generators in ``convert/``.

:func:`make_display` returns a :class:`DisplayScene`; score detections with
:func:`tests.scenes.match` and readings with :func:`reading_right`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .scenes import Truth, text_glyph

__all__ = ["KINDS", "DisplayScene", "make_display", "reading_right", "seven_segment_mask"]

KINDS = ("lcd", "led", "counter")

# segments lit per digit: a top, b upper right, c lower right, d bottom, e lower left, f upper left, g middle
_SEGMENTS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}
LABELS = ("LITRES", "kWh", "PRICE", "TOTAL", "m3", "VOLUME", "kW", "SALE", "GAL", "TEMP")


@dataclass(frozen=True)
class DisplayScene:
    """A generated photo (uint8 BGR) of one display, and its truth."""

    seed: int
    kind: str
    frame: np.ndarray
    digits: tuple[Truth, ...]
    reading: str  # what a person reads, decimal point included ("247.00")


def _segment_polygon(seg: str, w: float, h: float, t: float, gap: float, shape: str) -> np.ndarray:
    """One segment's outline in a digit box of ``w`` x ``h`` (y down), stroke ``t``."""
    half = t / 2
    top, mid, bot = half, h / 2, h - half
    left, right = half, w - half
    if seg in "agd":
        y = {"a": top, "g": mid, "d": bot}[seg]
        x0, x1 = left + gap, right - gap
        if shape == "hex":
            pts = [
                (x0, y),
                (x0 + half, y - half),
                (x1 - half, y - half),
                (x1, y),
                (x1 - half, y + half),
                (x0 + half, y + half),
            ]
        else:
            pts = [(x0, y - half), (x1, y - half), (x1, y + half), (x0, y + half)]
    else:
        x = left if seg in "ef" else right
        y0, y1 = (top + gap, mid - gap) if seg in "bf" else (mid + gap, bot - gap)
        if shape == "hex":
            pts = [
                (x, y0),
                (x + half, y0 + half),
                (x + half, y1 - half),
                (x, y1),
                (x - half, y1 - half),
                (x - half, y0 + half),
            ]
        else:
            pts = [(x - half, y0), (x + half, y0), (x + half, y1), (x - half, y1)]
    return np.array(pts, np.float64)


def seven_segment_mask(
    digit: int,
    height: int,
    *,
    rng: np.random.Generator,
    italic: float = 0.0,
    lit: str | None = None,
    gap: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Masks (lit, unlit) of one seven-segment digit ``height`` px tall, float32 in [0, 1].

    ``lit`` overrides the segments lit (e.g. ``"abcfg"``: a 9 without its tail); ``gap``
    sets the gap between segments as a share of the stroke (random when None).
    """
    import cv2

    w = height * rng.uniform(0.48, 0.62)
    t = height * rng.uniform(0.09, 0.16)
    gap = t * (rng.uniform(0.15, 0.6) if gap is None else gap)
    shape = "hex" if rng.random() < 0.6 else "rect"
    shear = np.tan(np.deg2rad(italic))
    pad = int(height * (0.1 + abs(shear))) + 2
    W, H = int(w + 2 * pad + height * abs(shear)), int(height + 2 * pad)
    on = np.zeros((H * 4, W * 4), np.uint8)
    off = np.zeros_like(on)
    segs = lit if lit is not None else _SEGMENTS[digit]
    for seg in "abcdefg":
        poly = _segment_polygon(seg, w, height, t, gap, shape)
        poly[:, 0] += pad + shear * (height - poly[:, 1])  # lean right as it rises
        poly[:, 1] += pad
        cv2.fillPoly(on if seg in segs else off, [np.rint(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA)
    on = cv2.resize(on, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    off = cv2.resize(off, (W, H), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return on, off


def _dot(height: int) -> np.ndarray:
    s = max(2, int(round(height * 0.13)))
    return np.ones((s, s), np.float32)


def _reading(rng: np.random.Generator, kind: str) -> str:
    if kind == "counter":
        n = int(rng.integers(4, 9))
        return "".join(str(int(d)) for d in rng.integers(0, 10, n))
    n = int(rng.integers(2, 7))
    digits = "".join(str(int(d)) for d in rng.integers(0, 10, n))
    if n >= 3 and digits[0] == "0":
        digits = str(int(rng.integers(1, 10))) + digits[1:]
    if rng.random() < 0.65 and n >= 2:
        at = int(rng.integers(1, n))
        return digits[:at] + "." + digits[at:]
    return digits


def _layout_sevenseg(
    reading: str, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """The reading as lit and unlit masks side by side; digit boxes (x, y, w, h) in mask pixels."""
    italic = float(rng.uniform(0, 12)) if rng.random() < 0.4 else 0.0
    pitch_gap = height * rng.uniform(0.12, 0.35)
    parts: list[tuple[str, np.ndarray, np.ndarray]] = []
    for ch in reading:
        if ch == ".":
            d = _dot(height)
            parts.append((".", d, np.zeros_like(d)))
            continue
        digit = int(ch)
        lit = None
        if digit == 7 and rng.random() < 0.3:
            lit = "abcf"
        elif digit == 9 and rng.random() < 0.3:
            lit = "abcfg"
        elif digit == 6 and rng.random() < 0.3:
            lit = "fgedc"
        on, off = seven_segment_mask(digit, height, rng=rng, italic=italic, lit=lit)
        parts.append((ch, on, off))
    pad = int(height * 0.4)
    total_w = pad * 2 + sum(p[1].shape[1] for p in parts) + int(pitch_gap * 0.3) * len(parts)
    total_h = max(p[1].shape[0] for p in parts) + 2 * pad
    lit_m = np.zeros((total_h, total_w), np.float32)
    unlit = np.zeros_like(lit_m)
    boxes = []
    x = pad
    base = pad + max(p[1].shape[0] for p in parts)
    for ch, on, off in parts:
        h, w = on.shape
        y = base - h
        if ch == ".":
            y = base - int(height * 0.1) - int(height * 0.12) - h  # on the baseline, inside the digits' padding
            y = base - (max(p[1].shape[0] for p in parts) - height) // 2 - h
            x0 = x - int(pitch_gap * 0.15)
            lit_m[y : y + h, x0 : x0 + w] = np.maximum(lit_m[y : y + h, x0 : x0 + w], on)
            x = x0 + w + int(pitch_gap * 0.3)
            continue
        lit_m[y : y + h, x : x + w] = np.maximum(lit_m[y : y + h, x : x + w], on)
        unlit[y : y + h, x : x + w] = np.maximum(unlit[y : y + h, x : x + w], off)
        ys, xs = np.nonzero(on > 0.3)
        if len(ys):
            boxes.append((int(ch), (x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)))
        x += w + int(pitch_gap * 0.3)
    return lit_m, unlit, boxes


def _drum_digit(digit: int, height: int, rng: np.random.Generator, font: int) -> np.ndarray:
    import cv2

    g = text_glyph(str(digit), height, rng) if font < 0 else None
    if g is None:
        scale = height / 22.0
        thick = max(1, int(round(scale * rng.uniform(1.8, 2.8))))
        (tw, th), base = cv2.getTextSize(str(digit), font, scale, thick)
        img = np.zeros((th + base + 2 * thick + 4, tw + 2 * thick + 4), np.uint8)
        cv2.putText(img, str(digit), (thick + 2, th + thick + 2), font, scale, 255, thick, cv2.LINE_AA)
        ys, xs = np.nonzero(img)
        g = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32) / 255.0
        g = cv2.resize(g, (max(2, int(g.shape[1] * height / g.shape[0])), height), interpolation=cv2.INTER_AREA)
    return g


def _layout_counter(
    reading: str, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """Counter drums: (ink mask, window mask, red-drum mask, digit boxes)."""
    font = int(rng.choice([-1, 0, 2, 4]))  # -1: a DejaVu face through text_glyph
    win_w = int(height * rng.uniform(1.0, 1.25))
    win_h = int(height * rng.uniform(1.4, 1.8))
    gap = int(height * rng.uniform(0.12, 0.35))
    pad = int(height * 0.6)
    n = len(reading)
    W = 2 * pad + n * win_w + (n - 1) * gap
    H = 2 * pad + win_h
    ink = np.zeros((H, W), np.float32)
    windows = np.zeros_like(ink)
    red = np.zeros_like(ink)
    red_last = rng.random() < 0.35
    boxes = []
    for i, ch in enumerate(reading):
        x0 = pad + i * (win_w + gap)
        y0 = pad
        windows[y0 : y0 + win_h, x0 : x0 + win_w] = 1.0
        g = _drum_digit(int(ch), height, rng, font)
        gh, gw = g.shape
        gw = min(gw, win_w - 2)
        g = g[:, :gw]
        gx = x0 + (win_w - gw) // 2
        gy = y0 + (win_h - gh) // 2 + int(rng.integers(-height // 12, height // 12 + 1))
        ink[gy : gy + gh, gx : gx + gw] = np.maximum(ink[gy : gy + gh, gx : gx + gw], g)
        # the neighbouring digits of the drum show at the window's edges
        for nb, dy in ((int(ch) - 1) % 10, -1), ((int(ch) + 1) % 10, 1):
            ng = _drum_digit(nb, height, rng, font)[:, :gw]
            ny = gy + dy * int(height * 1.35)
            top, bottom = max(ny, y0), min(ny + ng.shape[0], y0 + win_h)
            if bottom > top:
                ink[top:bottom, gx : gx + ng.shape[1]] = np.maximum(
                    ink[top:bottom, gx : gx + ng.shape[1]], ng[top - ny : bottom - ny]
                )
        if red_last and i == n - 1:
            red[y0 : y0 + win_h, x0 : x0 + win_w] = 1.0
        ys, xs = np.nonzero(g > 0.3)
        boxes.append((int(ch), (gx + int(xs.min()), gy + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1)))
    return ink, windows, red, boxes


def _place(canvas: np.ndarray, layer: np.ndarray, colour: Sequence[float], x: int, y: int) -> None:
    h, w = layer.shape
    region = canvas[y : y + h, x : x + w]
    a = layer[: region.shape[0], : region.shape[1], None]
    region[:] = region * (1 - a) + np.asarray(colour, np.float32) * a


def make_display(seed: int, *, kind: str | None = None, shape: tuple[int, int] = (480, 640)) -> DisplayScene:
    """One photo of a display or counter, drawn from ``seed``.

    Args:
        seed: Everything is drawn from it.
        kind: ``"lcd"``, ``"led"`` or ``"counter"``; None picks one from the seed.
        shape: The frame's ``(h, w)``; the display fills 35-80% of its width.
    """
    import cv2

    rng = np.random.default_rng([0xD15, seed])
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    reading = _reading(rng, kind)
    Hf, Wf = shape
    # draw at a working scale where the digits are 40-90 px, then fit the frame
    height = int(rng.uniform(40, 90))
    if kind == "counter":
        ink, windows, red, boxes = _layout_counter(reading, height, rng)
    else:
        ink, unlit, boxes = _layout_sevenseg(reading, height, rng)
    h, w = ink.shape
    margin = int(height * rng.uniform(0.5, 1.2))
    label = None
    if rng.random() < 0.7:
        word = str(rng.choice(LABELS))
        label = text_glyph(word, int(height * rng.uniform(0.25, 0.45)), rng)
    lab_h = 0 if label is None else label.shape[0] + int(height * 0.2)
    panel_h, panel_w = h + 2 * margin + lab_h, w + 2 * margin
    housing = rng.uniform(30, 220, 3).astype(np.float32)
    canvas = np.empty((panel_h + 2 * margin, panel_w + 2 * margin, 3), np.float32)
    canvas[:] = housing
    px, py = margin, margin
    if kind == "lcd":
        glass = np.array(
            {
                "grey": (150, 165, 160),
                "green": (120, 190, 160),
                "blue": (215, 170, 110),
                "amber": (80, 170, 215),
            }[str(rng.choice(["grey", "green", "blue", "amber"]))],
            np.float32,
        ) * rng.uniform(0.75, 1.15)
        glass = np.clip(glass, 60, 245)
        ink_col = glass * rng.uniform(0.12, 0.35)
        canvas[py : py + panel_h, px : px + panel_w] = glass
        ghost = glass * (1 - rng.uniform(0.04, 0.12))
        _place(canvas, unlit, ghost, px + margin, py + margin)
        _place(canvas, ink, ink_col, px + margin, py + margin)
        label_col = ink_col
    elif kind == "led":
        panel = rng.uniform(5, 40, 3).astype(np.float32)
        glow = np.array(
            {"red": (40, 40, 250), "green": (90, 250, 70), "blue": (250, 160, 40), "amber": (40, 170, 255)}[
                str(rng.choice(["red", "green", "blue", "amber"]))
            ],
            np.float32,
        )
        canvas[py : py + panel_h, px : px + panel_w] = panel
        _place(canvas, unlit, panel + 0.12 * (glow - panel), px + margin, py + margin)
        halo = cv2.GaussianBlur(ink, (0, 0), height * 0.06) * 0.6
        _place(canvas, np.clip(halo, 0, 1), panel + 0.5 * (glow - panel), px + margin, py + margin)
        _place(canvas, ink, np.minimum(glow * 1.05 + 40, 255), px + margin, py + margin)
        label_col = glow * 0.8
    else:
        face = rng.uniform(170, 235, 3).astype(np.float32)
        canvas[py : py + panel_h, px : px + panel_w] = face
        white_on_black = rng.random() < 0.75
        drum, digit_col = (np.full(3, rng.uniform(10, 40), np.float32), np.full(3, rng.uniform(200, 245), np.float32))
        if not white_on_black:
            drum, digit_col = digit_col * 0.97, drum
        frame_col = face * rng.uniform(0.3, 0.7)
        thick = max(1, height // 16)
        big = cv2.dilate(windows, np.ones((2 * thick + 1, 2 * thick + 1), np.uint8))
        _place(canvas, big, frame_col, px + margin, py + margin)
        _place(canvas, windows, drum, px + margin, py + margin)
        if red.any():
            _place(canvas, red, np.array([30, 30, 170], np.float32), px + margin, py + margin)
        _place(canvas, ink, digit_col, px + margin, py + margin)
        label_col = frame_col * 0.5
    if label is not None:
        lx = px + margin + int(rng.uniform(0, max(1, w - label.shape[1])))
        ly = py + margin + h + int(height * 0.1)
        _place(canvas, label[: canvas.shape[0] - ly, : canvas.shape[1] - lx], label_col, lx, ly)
    # place the panel in the frame: scale so it spans 35-80% of the frame width, then tilt
    ch, cw = canvas.shape[:2]
    f = min(Wf * rng.uniform(0.35, 0.8) / cw, Hf * 0.8 / ch)
    ox, oy = px + margin, py + margin  # where the digit layer sits on the canvas
    tilt = np.deg2rad(rng.uniform(-20, 20)) if rng.random() < 0.7 else 0.0
    rot = np.deg2rad(rng.uniform(-6, 6))
    src = np.float32([[0, 0], [cw, 0], [cw, ch], [0, ch]])
    k = np.sin(tilt) * 0.25
    dst = np.float32(
        [[0, ch * max(0, k)], [cw, ch * max(0, -k)], [cw, ch * (1 - max(0, -k))], [0, ch * (1 - max(0, k))]]
    )
    dst *= f
    c, s = np.cos(rot), np.sin(rot)
    dst = dst @ np.float32([[c, s], [-s, c]])
    dst -= dst.min(axis=0)
    span = dst.max(axis=0)
    off = np.array([rng.uniform(0, max(1, Wf - span[0])), rng.uniform(0, max(1, Hf - span[1]))], np.float32)
    dst += off
    m = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    background = np.empty((Hf, Wf, 3), np.float32)
    background[:] = rng.uniform(40, 200, 3)
    grad = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.2), Wf, dtype=np.float32)[None, :, None]
    background *= grad
    warped = cv2.warpPerspective(canvas, m, (Wf, Hf), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    cover = cv2.warpPerspective(np.ones((ch, cw), np.float32), m, (Wf, Hf), flags=cv2.INTER_LINEAR)[..., None]
    img = background * (1 - cover) + warped * cover
    # glare: a bright soft spot somewhere on the display
    if rng.random() < 0.5:
        gy, gx = np.mgrid[0:Hf, 0:Wf].astype(np.float32)
        cx, cy = off[0] + rng.uniform(0, span[0]), off[1] + rng.uniform(0, span[1])
        r = rng.uniform(0.05, 0.18) * Wf
        spot = np.exp(-(((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * r * r)))[..., None]
        img = img + spot * rng.uniform(30, 90)
    sigma = rng.uniform(0, 1.6)
    if sigma > 0.4:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img * rng.uniform(0.8, 1.15) + rng.normal(0, rng.uniform(1, 6), img.shape)
    frame = np.clip(img, 0, 255).astype(np.uint8)
    ok, enc = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 95))])
    frame = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    # the truth: digit boxes through the same transform
    truths = []
    for digit, (x, y, bw, bh) in boxes:
        pts = np.float32([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]]) + np.float32([ox, oy])
        q = cv2.perspectiveTransform(pts[None], m)[0]
        lo, hi = q.min(axis=0), q.max(axis=0)
        truths.append(Truth((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]) + 1, int(hi[1] - lo[1]) + 1), digit, kind))
    return DisplayScene(seed, kind, frame, tuple(truths), reading)


def reading_right(numbers: Sequence, scene: DisplayScene) -> bool:
    """True when one of the numbers read is the scene's reading, exactly (decimal point included)."""
    return any(n.value == scene.reading for n in numbers)
