"""Camera-like scenes of digits on paper, with the truth of where each digit is.

:func:`make_scene` draws MNIST *test* digits (handwriting) and digits printed
from fonts (DejaVu TrueType and OpenCV's Hershey fonts, several weights) as
ink on paper, 24 to 90 px tall, on a 640x480 frame. Then it does to the page
what a handheld camera does: a perspective warp, an illumination gradient, a
soft shadow, a colour cast, defocus blur, sensor noise and JPEG compression.
Some scenes add distractors that must *not* be read as digits: words and
single letters (printed and script), ruled lines, sudoku-like grids, squared
(graph) paper under the digits, a page edge on a dark desk. Some scenes are inverted: chalk on a dark board.

Everything is drawn from one seed, so ``make_scene(seed, ...)`` is the same
frame on every machine. Seeds in use: the asserted test uses 20_000..,
the benchmark 10_000.., development anything else (0..).

:func:`match` scores detections against the truth (the same digit and IoU
>= 0.5 or one box's centre inside the other).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["MatchResult", "Scene", "Truth", "make_scene", "match", "mnist_glyph", "printed_glyph", "text_glyph"]

FRAME_SHAPE = (480, 640)
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
TTF_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerifCondensed.ttf",
)
# (Hershey font id, stroke thickness per 100 px of glyph height)
HERSHEY = ((0, 7.0), (0, 11.0), (2, 9.0), (3, 6.0), (4, 6.0), (1, 8.0))
WORDS = (
    "Total",
    "Name",
    "Date",
    "Page",
    "Room",
    "Price",
    "Week",
    "Mark",
    "Check",
    "Hello",
    "Exam",
    "Item",
    "Notes",
    "Year",
    "Qty",
    "Ref",
    "Score",
    "Area",
    "Meter",
    "Sum",
    "Kitchen",
    "Work",
    "from",
    "the",
    "and",
    "Answer",
    "Team",
    "Level",
    "North",
    "hrs",
    "min",
    "Due",
    "Box",
)
# Single symbols with no digit look-alike (I, l, O, S, Z, B, g, q, T... are left out on purpose).
LETTERS = ("A", "E", "H", "K", "M", "N", "R", "W", "X", "#", "%", "&", "@", "x", "k", "m", "w", "e", "a")


@dataclass(frozen=True)
class Truth:
    """One digit in a scene: its box ``(x, y, w, h)`` in frame pixels, value and kind."""

    box: tuple[int, int, int, int]
    digit: int
    source: str  # "mnist", "printed-dejavu" (a held-out font) or "printed-hershey"


@dataclass(frozen=True)
class Scene:
    """A generated frame (uint8 BGR) and what is in it."""

    seed: int
    frame: np.ndarray
    digits: tuple[Truth, ...]
    inverted: bool
    distractors: tuple[str, ...]  # kinds of distractors drawn ("words", "grid", ...)


@dataclass(frozen=True)
class MatchResult:
    """Counts from :func:`match`; per-kind counts of truths found and missed."""

    tp: int
    fp: int
    fn: int
    found: dict
    missed: dict
    false_boxes: tuple


# --------------------------------------------------------------------------- glyphs


@functools.lru_cache(maxsize=256)
def _ttf_glyph(font: str, text: str) -> np.ndarray:
    """Alpha mask (float32, tight) of ``text`` in a DejaVu font at ~120 px."""
    from PIL import Image, ImageDraw, ImageFont

    f = ImageFont.truetype(str(DEJAVU / font), 120)
    left, t, r, b = f.getbbox(text)
    im = Image.new("L", (r - left + 20, b - t + 20), 0)
    ImageDraw.Draw(im).text((10 - left, 10 - t), text, font=f, fill=255)
    return _tight(np.asarray(im, np.float32) / 255.0)


@functools.lru_cache(maxsize=256)
def _hershey_glyph(font: int, weight: float, text: str) -> np.ndarray:
    import cv2

    scale = 4.0
    thick = max(1, int(round(weight * 1.0)))
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    im = np.zeros((h + base + 40, w + 40), np.uint8)
    cv2.putText(im, text, (20, h + 20), font, scale, 255, thick, cv2.LINE_AA)
    return _tight(im.astype(np.float32) / 255.0)


def _tight(a: np.ndarray, level: float = 0.3) -> np.ndarray:
    ys, xs = np.nonzero(a > level)
    if len(ys) == 0:
        return a
    return a[max(ys.min() - 1, 0) : ys.max() + 2, max(xs.min() - 1, 0) : xs.max() + 2]


def _scaled(alpha: np.ndarray, height: int, width_factor: float = 1.0) -> np.ndarray:
    import cv2

    h, w = alpha.shape
    nh = max(4, int(round(height * h / max(1, _ink_height(alpha)))))
    nw = max(2, int(round(w * nh / h * width_factor)))
    interp = cv2.INTER_AREA if nh < h else cv2.INTER_CUBIC
    return np.clip(cv2.resize(alpha, (nw, nh), interpolation=interp), 0, 1)


def _ink_height(a: np.ndarray) -> int:
    rows = np.flatnonzero((a > 0.5).any(axis=1))
    return int(rows[-1] - rows[0] + 1) if len(rows) else a.shape[0]


def mnist_glyph(img: np.ndarray, height: int, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit scaled to ``height`` px of ink, its soft edge made pen-like or left soft."""
    a = _tight(img.astype(np.float32) / 255.0, 0.2)
    a = _scaled(a, height)
    k = rng.uniform(1.0, 3.0)  # edge sharpness: 1 = blurry marker, 3 = crisp pen
    return np.clip((a - 0.5) * k + 0.5, 0, 1) * (a > 0.02)


def printed_glyph(digit: int, height: int, rng: np.random.Generator) -> np.ndarray:
    return _printed(digit, height, rng)[0]


def _printed(digit: int, height: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A printed digit and its font family: "dejavu" (never used in training) or "hershey"
    (a family the conversion stage also draws, with other weights and distortions)."""
    if rng.random() < 0.55:
        g = _ttf_glyph(TTF_FONTS[rng.integers(len(TTF_FONTS))], str(digit))
        family = "dejavu"
    else:
        font, weight = HERSHEY[rng.integers(len(HERSHEY))]
        g = _hershey_glyph(font, weight * rng.uniform(0.8, 1.25) * 0.55, str(digit))
        family = "hershey"
    return _scaled(g, height, rng.uniform(0.9, 1.1)), family


def text_glyph(text: str, height: int, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.6:
        g = _ttf_glyph(TTF_FONTS[rng.integers(len(TTF_FONTS))], text)
    else:
        font = (0, 2, 3, 6, 7)[rng.integers(5)]  # simplex, duplex, complex, script x2
        g = _hershey_glyph(font, rng.uniform(3.0, 6.0), text)
    return _scaled(g, height)


# --------------------------------------------------------------------------- layout


class _Canvas:
    def __init__(self, shape: tuple[int, int]) -> None:
        self.alpha = np.zeros(shape, np.float32)
        self.taken: list[tuple[int, int, int, int]] = []

    def free(self, x: int, y: int, w: int, h: int, margin: int) -> bool:
        H, W = self.alpha.shape
        if x < 24 or y < 24 or x + w > W - 24 or y + h > H - 24:
            return False
        for tx, ty, tw, th in self.taken:
            if x < tx + tw + margin and tx < x + w + margin and y < ty + th + margin and ty < y + h + margin:
                return False
        return True

    def put(self, a: np.ndarray, x: int, y: int) -> None:
        h, w = a.shape
        region = self.alpha[y : y + h, x : x + w]
        np.maximum(region, a, out=region)


def _place_row(
    canvas: _Canvas,
    glyphs: list[np.ndarray],
    gaps: list[int],
    rng: np.random.Generator,
    margin: int,
    cell: tuple[int, int, int, int] | None = None,
) -> list[tuple[int, int, int, int]] | None:
    """Places glyphs side by side on one baseline; returns their ink boxes (canvas coords) or None."""
    H, W = canvas.alpha.shape
    hmax = max(g.shape[0] for g in glyphs)
    total_w = sum(g.shape[1] for g in glyphs) + sum(gaps)
    for _ in range(40):
        if cell is None:
            x = int(rng.integers(0, max(1, W - total_w)))
            y = int(rng.integers(0, max(1, H - hmax)))
        else:
            cx, cy, cw, ch = cell
            x = cx + (cw - total_w) // 2 + int(rng.integers(-2, 3))
            y = cy + (ch - hmax) // 2 + int(rng.integers(-2, 3))
        if cell is None and not canvas.free(x, y, total_w, hmax, margin):
            continue
        boxes, cx_ = [], x
        for g, gap in zip(glyphs, [*gaps, 0]):
            gy = y + hmax - g.shape[0] + int(rng.integers(-1, 2)) * (g.shape[0] // 12)
            gy = min(max(gy, 0), H - g.shape[0])
            canvas.put(g, cx_, gy)
            ys, xs = np.nonzero(g > 0.5)
            boxes.append(
                (cx_ + int(xs.min()), gy + int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
            )
            cx_ += g.shape[1] + gap
        canvas.taken.append((x, y, total_w, hmax))
        return boxes
    return None


# --------------------------------------------------------------------------- scene


def make_scene(seed: int, mnist: tuple[np.ndarray, np.ndarray], *, shape: tuple[int, int] = FRAME_SHAPE) -> Scene:
    """Draws one scene.

    Args:
        seed: Everything random comes from ``np.random.default_rng(seed)``.
        mnist: ``(images, labels)`` of the MNIST *test* split (uint8 28x28, white on black).
        shape: Frame ``(h, w)``.

    Returns:
        The frame (uint8 BGR) and the truth boxes of every digit in it.
    """
    import cv2

    images, labels = mnist
    rng = np.random.default_rng(seed)
    H, W = shape
    canvas = _Canvas(shape)
    truths: list[tuple[tuple[int, int, int, int], int, str]] = []
    kinds: list[str] = []
    handwritten_share = rng.uniform(0.3, 0.8)

    def digit_glyph(d: int | None, height: int, hand: bool) -> tuple[np.ndarray, int, str]:
        if hand:
            if d is None:
                i = int(rng.integers(len(images)))
            else:
                idx = np.flatnonzero(labels == d)
                i = int(idx[rng.integers(len(idx))])
            return mnist_glyph(images[i], height, rng), int(labels[i]), "mnist"
        d = int(rng.integers(10)) if d is None else d
        g, family = _printed(d, height, rng)
        return g, d, "printed-" + family

    # A sudoku-like grid with digits in some cells.
    if rng.random() < 0.2:
        kinds.append("grid")
        n = int(rng.integers(3, 6))
        cell = int(rng.integers(44, 72))
        gx = int(rng.integers(30, max(31, W - n * cell - 30)))
        gy = int(rng.integers(30, max(31, H - n * cell - 30)))
        thick = int(rng.integers(1, 4))
        for i in range(n + 1):
            t = thick + (1 if i % 3 == 0 else 0)
            cv2.line(canvas.alpha, (gx, gy + i * cell), (gx + n * cell, gy + i * cell), 0.9, t)
            cv2.line(canvas.alpha, (gx + i * cell, gy), (gx + i * cell, gy + n * cell), 0.9, t)
        canvas.taken.append((gx - 4, gy - 4, n * cell + 8, n * cell + 8))
        hand = rng.random() < handwritten_share
        for r in range(n):
            for c in range(n):
                if rng.random() < 0.45:
                    h = int(cell * rng.uniform(0.45, 0.68))
                    g, d, source = digit_glyph(None, h, hand)
                    boxes = _place_row(canvas, [g], [], rng, 0, (gx + c * cell, gy + r * cell, cell, cell))
                    if boxes:
                        truths.append((boxes[0], d, source))

    # Ruled lines under some numbers (a notebook or a form).
    ruled = rng.random() < 0.2
    if ruled:
        kinds.append("ruled")

    # Numbers and single digits.
    for _ in range(int(rng.integers(3, 9))):
        hand = rng.random() < handwritten_share
        height = int(np.exp(rng.uniform(np.log(24), np.log(90))))
        n = int(rng.choice([1, 1, 2, 2, 3, 4]))
        glyphs, digits, sources = zip(
            *(digit_glyph(None, int(height * rng.uniform(0.92, 1.08)), hand) for _ in range(n))
        )
        gaps = [int(height * rng.uniform(0.12, 0.45)) for _ in range(n - 1)]
        boxes = _place_row(canvas, list(glyphs), gaps, rng, max(10, height // 2))
        if boxes is None:
            continue
        for b, d, source in zip(boxes, digits, sources):
            truths.append((b, d, source))
        if ruled and rng.random() < 0.7:
            x0 = min(b[0] for b in boxes) - int(rng.integers(10, 60))
            x1 = max(b[0] + b[2] for b in boxes) + int(rng.integers(10, 60))
            yl = max(b[1] + b[3] for b in boxes) + int(rng.integers(3, 8))
            cv2.line(
                canvas.alpha,
                (max(x0, 4), yl),
                (min(x1, W - 4), yl),
                float(rng.uniform(0.5, 0.9)),
                int(rng.integers(1, 3)),
            )

    # Distractors: words and single letters (printed or script), never truth.
    if rng.random() < 0.45:
        kinds.append("text")
        for _ in range(int(rng.integers(1, 5))):
            height = int(rng.uniform(24, 60))
            text = WORDS[rng.integers(len(WORDS))] if rng.random() < 0.7 else LETTERS[rng.integers(len(LETTERS))]
            g = text_glyph(text, height, rng)
            if g.shape[1] < W - 60:
                _place_row(canvas, [g], [], rng, max(10, height // 2))

    # Ink and paper colours; chalk on a board when inverted.
    inverted = bool(rng.random() < 0.15)
    cast = 1.0 + rng.uniform(-0.12, 0.12, 3)
    if inverted:
        paper = np.array([rng.uniform(25, 70)] * 3) * cast * np.array([1.0, rng.uniform(1.0, 1.4), 1.0])
        ink = np.array([rng.uniform(190, 245)] * 3) * cast
    else:
        paper = np.array([rng.uniform(185, 250)] * 3) * cast
        ink = np.array([[35, 30, 30], [110, 40, 25], [30, 30, 120], [60, 60, 60]][rng.integers(4)], float)
        ink = ink * rng.uniform(0.6, 1.3)
    strength = rng.uniform(0.75, 1.0)
    a = canvas.alpha[..., None] * strength
    page = paper[None, None, :] * np.ones((H, W, 1), np.float32)
    # Squared (graph) paper under the ink, from its own stream so other scenes stay as they were.
    sq = np.random.default_rng([seed, 1])
    if not inverted and sq.random() < 0.12:
        kinds.append("squared")
        step = int(sq.integers(22, 36))
        lines = np.zeros((H, W), np.float32)
        for v in range(int(sq.integers(0, step)), W, step):
            cv2.line(lines, (v, 0), (v, H), 1.0, 1)
        for v in range(int(sq.integers(0, step)), H, step):
            cv2.line(lines, (0, v), (W, v), 1.0, 1)
        la = (lines * sq.uniform(0.25, 0.7))[..., None]
        page = page * (1 - la) + paper * np.array([0.75, 0.72, 0.6]) * la  # blue-grey rules
    page = page * (1 - a) + ink[None, None, :] * a
    page += rng.normal(0, 2.0, (H, W, 1)).astype(np.float32)  # paper grain

    # Perspective: the page seen from a tilted, rotated, handheld camera.
    src = np.float32([[0, 0], [W, 0], [W, H], [0, H]])
    jitter = rng.uniform(-0.07, 0.07, (4, 2)) * np.float32([W, H])
    ang = np.deg2rad(rng.uniform(-8, 8))
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    zoom = rng.uniform(0.92, 1.08)
    centre = np.float32([W / 2, H / 2])
    dst = ((src - centre) @ rot.T * zoom + centre + jitter).astype(np.float32)
    M = cv2.getPerspectiveTransform(src, dst)
    desk = np.array([rng.uniform(20, 90)] * 3) * (1 + rng.uniform(-0.2, 0.2, 3))
    if inverted:
        desk = desk * 0.5
    frame = cv2.warpPerspective(
        page.astype(np.float32),
        M,
        (W, H),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(float(v) for v in desk),
    )
    if (dst.min(axis=0) > 0).any() or (dst.max(axis=0) < [W, H]).any():
        kinds.append("page-edge")

    # Light: a gradient across the page, a vignette, sometimes a soft shadow.
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    th = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(th) * (xx - W / 2) + np.sin(th) * (yy - H / 2)) / (0.5 * np.hypot(W, H))
    light = 1.0 + rng.uniform(0.05, 0.35) * ramp
    light *= 1.0 - rng.uniform(0.0, 0.3) * ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
    if rng.random() < 0.45:
        kinds.append("shadow")
        # A hand, a phone or a head: a large soft region (a half-plane or an ellipse)
        # covering 15-70% of the frame, not a thin sliver.
        for _ in range(20):
            mask = np.zeros((H, W), np.float32)
            if rng.random() < 0.5:
                a = rng.uniform(0, 2 * np.pi)
                off = rng.uniform(-0.3, 0.3) * np.hypot(W, H)
                mask[np.cos(a) * (xx - W / 2) + np.sin(a) * (yy - H / 2) > off] = 1.0
            else:
                centre = (int(rng.uniform(0, W)), int(rng.uniform(0, H)))
                axes = (int(rng.uniform(0.3, 0.7) * W), int(rng.uniform(0.3, 0.7) * H))
                cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
            if 0.15 <= mask.mean() <= 0.7:
                break
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(4, 20))
        light *= 1.0 - rng.uniform(0.3, 0.6) * mask
    frame *= light[..., None]

    # Optics and sensor: defocus, noise, JPEG.
    sigma = rng.uniform(0.0, 1.6)
    if sigma > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), sigma)
    frame += rng.normal(0, rng.uniform(1.5, 7.0), frame.shape).astype(np.float32)
    frame8 = np.clip(frame, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", frame8, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 92))])
    frame8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)

    out: list[Truth] = []
    for (x, y, w, h), d, src_kind in truths:
        corners = np.float32([[x, y], [x + w, y], [x + w, y + h], [x, y + h]]).reshape(-1, 1, 2)
        t = cv2.perspectiveTransform(corners, M).reshape(-1, 2)
        x0, y0 = t.min(axis=0)
        x1, y1 = t.max(axis=0)
        if x0 < 2 or y0 < 2 or x1 > W - 2 or y1 > H - 2:
            continue  # cut by the frame edge: not counted either way
        # Shrink the corner box toward a tight one (rotation inflates it).
        s = abs(np.sin(ang))
        bw, bh = x1 - x0, y1 - y0
        dx, dy = 0.5 * s * min(bw, bh) * 0.5, 0.5 * s * min(bw, bh) * 0.5
        out.append(
            Truth(
                (int(round(x0 + dx)), int(round(y0 + dy)), int(round(bw - 2 * dx)), int(round(bh - 2 * dy))),
                d,
                src_kind,
            )
        )
    return Scene(seed, frame8, tuple(out), inverted, tuple(kinds))


def make_scenes(seeds: Iterable[int], mnist: tuple[np.ndarray, np.ndarray]) -> list[Scene]:
    """:func:`make_scene` for each seed."""
    return [make_scene(s, mnist) for s in seeds]


# --------------------------------------------------------------------------- scoring


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


def _centre_in(a: Sequence[int], b: Sequence[int]) -> bool:
    cx, cy = a[0] + a[2] / 2, a[1] + a[3] / 2
    return b[0] <= cx <= b[0] + b[2] and b[1] <= cy <= b[1] + b[3]


def _same_place(d: Sequence[int], t: Sequence[int]) -> bool:
    return _iou(d, t) >= 0.5 or (_centre_in(d, t) and _centre_in(t, d))


def match(detections: Sequence, truths: Sequence[Truth]) -> MatchResult:
    """Matches detections (objects with ``box``, ``digit``, ``score``) to the truth.

    A truth is found by the best-scoring unused detection of the same digit at the
    same place (IoU >= 0.5, or each box's centre inside the other). Unmatched
    detections are false positives; unmatched truths are misses.
    """
    used = [False] * len(detections)
    order = sorted(range(len(detections)), key=lambda i: -detections[i].score)
    found: dict[str, int] = {}
    missed: dict[str, int] = {}
    for t in truths:
        hit = next(
            (
                i
                for i in order
                if not used[i] and detections[i].digit == t.digit and _same_place(detections[i].box, t.box)
            ),
            None,
        )
        if hit is None:
            missed[t.source] = missed.get(t.source, 0) + 1
        else:
            used[hit] = True
            found[t.source] = found.get(t.source, 0) + 1
    fps = tuple(detections[i] for i in range(len(detections)) if not used[i])
    tp = sum(found.values())
    return MatchResult(tp, len(fps), len(truths) - tp, found, missed, fps)
