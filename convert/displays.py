"""Display digits as a camera sees them: seven-segment LCD/LED, counter drums, dot matrix, 14-segment, print.

MNIST and the printed digits of :mod:`convert.printed` are ink on paper. The digits a
camera is pointed at are mostly not: utility meters (mechanical counter drums), LCD and
LED seven-segment displays, dot-matrix and 14/16-segment displays. Each crop here is
drawn at about 100 px a digit as a colour image of the display, photographed
(:func:`camera`: perspective tilt, small rotation, glare, a size of 20-110 px, blur,
sensor noise, JPEG) and normalised by the runtime's own :func:`edge_infer.to_mnist`,
told the polarity (the generator knows it), as :func:`convert.render.ink_crop` does
for printed digits.

Kinds (:data:`KINDS`, with their shares of a draw):

- ``lcd7``: dark segments on a grey, green, blue or amber backlight, unlit "ghost"
  segments at low contrast;
- ``led7``: light segments (red, green, blue, white) on dark, with a glow;
- both seven-segment kinds: upright or italic (0-15 degrees), segment gaps, rectangular,
  rounded, bevelled or hexagonal segments, 6, 7 and 9 with and without tails, a decimal
  point or colon beside the digit, parts of the neighbouring digits at the sides;
- ``drum``: a mechanical counter drum in its window (white on black, black on white,
  white on red, red on white), the previous and next digits cut in above and below, on a
  curved drum; a third of them between two digits. A drum within 0.2 of a digit is labelled
  that digit (``9.9`` is a 0), else 10 ("not a digit"), the rule of meter-digits;
- ``dots``: a 5x7 dot-matrix digit (round or square dots, ghost dots on LCDs);
- ``seg14``: a 14/16-segment digit (a slashed 0, a flagged 1, a 7 with a diagonal);
- ``faces``: printed faces the fonts lack, drawn as strokes on paper: a 1 with a
  flag, with or without a foot; a 7 with or without a bar; an open or closed 4.

:func:`draw_displays` returns the crops with their kind and drum value;
:func:`make_displays` the crops and labels, for training; :func:`heldout_displays`
draws from another seed stream with DejaVu fonts for the drums (never used in training).
Everything is drawn from a generator seeded by ``seed``: the same seed gives the same
arrays. Needs OpenCV and Pillow.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.render import dejavu_fonts, elastic, find_fonts, tight, ttf_text
from convert.segments import glyph_cells

__all__ = [
    "KINDS",
    "DisplaySet",
    "camera",
    "draw_displays",
    "drum_label",
    "heldout_displays",
    "make_displays",
]

log = logging.getLogger(__name__)

#: kind -> share of a draw.
KINDS: dict[str, float] = {"lcd7": 0.25, "led7": 0.12, "drum": 0.40, "dots": 0.07, "seg14": 0.07, "faces": 0.09}
_STREAM = 0x4449  # mixed into the seed: displays draw from their own stream
_HELDOUT_STREAM = 0x4448
#: share of drums drawn between two digits (labelled 10 unless within 0.2 of one).
ROLLING_SHARE = 0.35
#: a crop whose ink fills more of the 28x28 than this is a blob (glare, glow or blur took the
#: segments' gaps), not a digit: it is drawn again rather than taught as its digit.
MAX_FILL = 0.32  # the 99th percentile of real meter digits is 0.29, of MNIST 0.25


@dataclass(frozen=True)
class DisplaySet:
    """Drawn display crops.

    Attributes:
        x: uint8 ``(N, 28, 28)``, white on black, as :func:`edge_infer.to_mnist` lays out a crop.
        y: uint8 ``(N,)``: 0-9, or 10 for a drum between two digits.
        kind: ``(N,)`` str, a key of :data:`KINDS`.
        value: float32 ``(N,)``: the drum's value (``7.4``) for drums, the digit otherwise.
    """

    x: np.ndarray
    y: np.ndarray
    kind: np.ndarray
    value: np.ndarray


def drum_label(value: float) -> int:
    """The class of a drum at ``value``: the digit within 0.2 of it (9.9 is 0), else 10.

    >>> [drum_label(v) for v in (7.0, 7.2, 7.3, 7.7, 7.8, 9.9)]
    [7, 7, 10, 10, 8, 0]
    """
    v = round(float(value), 6)
    d, f = int(math.floor(v)) % 10, v - math.floor(v)
    if f <= 0.2 + 1e-6:
        return d
    if f >= 0.8 - 1e-6:
        return (d + 1) % 10
    return 10


def _cut(img: np.ndarray, box: tuple[int, int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Crop ``img`` around ``box`` with random margins (neighbours may be cut in at the sides)."""
    x, y, w, h = box
    mx0, mx1 = (w * rng.uniform(0.1, 0.3) for _ in range(2))
    my0, my1 = (h * rng.uniform(0.1, 0.3) for _ in range(2))
    H, W = img.shape[:2]
    x0, x1 = max(0, int(x - mx0)), min(W, int(x + w + mx1))
    y0, y1 = max(0, int(y - my0)), min(H, int(y + h + my1))
    return img[y0:y1, x0:x1]


def _segment_scene(digit: int, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """A colour image (float32 BGR 0-255) of a segment/dot display around ``digit``; and True for dark ink."""
    import cv2

    neighbours = [int(rng.integers(10)), digit, int(rng.integers(10))]
    lit, ghost, box = glyph_cells(neighbours, kind, rng)
    led = kind == "led7" or (kind in ("dots", "seg14") and rng.random() < 0.5)
    if led:
        colour = np.array(
            [(40, 40, 255), (60, 255, 80), (255, 160, 60), (240, 240, 240), (40, 200, 255)][int(rng.integers(5))],
            np.float32,
        )
        colour *= rng.uniform(0.6, 1.0)
        bg = np.array([rng.uniform(0, 40)] * 3, np.float32) + rng.uniform(0, 20, 3).astype(np.float32)
        glow = cv2.GaussianBlur(lit, (0, 0), rng.uniform(1.5, 4.0)) * rng.uniform(0.1, 0.5)
        g = ghost * rng.uniform(0.0, 0.12)
        a = np.clip(lit + glow + g, 0, 1.2)[..., None]
        img = bg + a * (colour - bg)
        if rng.random() < 0.5:  # the core of a bright segment saturates to white
            img = img + lit[..., None] * rng.uniform(0, 90)
        dark_ink = False
    else:
        backs = [(190, 195, 190), (150, 210, 160), (220, 170, 120), (110, 200, 235), (200, 200, 200), (160, 170, 165)]
        bg = np.array(backs[int(rng.integers(len(backs)))], np.float32) * rng.uniform(0.6, 1.15)
        ink = np.array([rng.uniform(10, 70)] * 3, np.float32)
        g = ghost * rng.uniform(0.0, 0.15) if rng.random() < 0.7 else ghost * 0
        a = np.clip(lit + g, 0, 1)[..., None]
        img = bg + a * (ink - bg)
        # an LCD's shadow: the segments cast a faint offset copy on the backplane
        if rng.random() < 0.3:
            sh = np.roll(lit, (int(rng.integers(1, 4)), int(rng.integers(1, 4))), (0, 1))[..., None]
            img = img - sh * (1 - a) * rng.uniform(10, 40)
        dark_ink = True
    return _cut(np.clip(img, 0, 255), box, rng), dark_ink


def _drum_scene(value: float, rng: np.random.Generator, fonts: Sequence[Path]) -> tuple[np.ndarray, bool]:
    """A counter drum at ``value`` seen through its window: float32 BGR, and True for dark ink."""
    import cv2

    font = fonts[int(rng.integers(len(fonts)))]
    d0 = int(math.floor(value))
    f = value - d0
    glyphs = [tight(ttf_text(font, str((d0 + k) % 10), rng)) for k in (-1, 0, 1, 2)]
    gh = max(g.shape[0] for g in glyphs)
    gw = max(g.shape[1] for g in glyphs)
    pitch = gh * rng.uniform(1.15, 1.6)
    colw = int(gw * rng.uniform(1.25, 1.7))
    strip_h = int(pitch * 4 + gh)
    strip = np.zeros((strip_h, colw), np.float32)
    for k, g in enumerate(glyphs):
        cy = int(pitch * (k + 0.5))
        y0, x0 = cy - g.shape[0] // 2, (colw - g.shape[1]) // 2
        strip[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]] = np.maximum(
            strip[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]], g
        )
    # the window: centred on digit d0 + f, seen on a cylinder (rows compress towards its edges)
    centre = pitch * (1.5 + f)
    win_h = gh * rng.uniform(1.05, 1.9)  # tall windows show the neighbours above and below
    radius = win_h / 2 / math.sin(rng.uniform(0.5, 1.2))
    out_h = int(win_h)
    yo = (np.arange(out_h, dtype=np.float32) - out_h / 2) / radius
    ys = centre + radius * np.arcsin(np.clip(yo, -1, 1))
    gx, gy = np.meshgrid(np.arange(colw, dtype=np.float32), ys.astype(np.float32))
    m = cv2.remap(strip, gx, gy, cv2.INTER_LINEAR, borderValue=0)
    shade = (1 - 0.35 * rng.random() * (yo**2)[:, None]).astype(np.float32)  # darker towards the drum's edges
    style = int(rng.integers(4))  # white on black, black on white, white on red, red on white
    if style == 0:
        bg, ink = np.array([rng.uniform(5, 60)] * 3), np.array([rng.uniform(170, 250)] * 3)
    elif style == 1:
        bg, ink = np.array([rng.uniform(160, 245)] * 3), np.array([rng.uniform(5, 60)] * 3)
    elif style == 2:
        bg, ink = (
            np.array([rng.uniform(20, 60), rng.uniform(20, 60), rng.uniform(120, 220)]),
            np.array([rng.uniform(180, 250)] * 3),
        )
    else:
        bg, ink = (
            np.array([rng.uniform(170, 245)] * 3),
            np.array([rng.uniform(10, 60), rng.uniform(10, 60), rng.uniform(130, 220)]),
        )
    img = (bg[None, None, :] + m[..., None] * (ink - bg)[None, None, :]) * shade[..., None]
    # the window frame: dark or light bands at the sides, sometimes
    if rng.random() < 0.5:
        fw = int(colw * rng.uniform(0.0, 0.15))
        frame = rng.uniform(0, 255)
        if fw:
            img[:, :fw] = frame
            img[:, colw - fw :] = frame
    lum = lambda c: 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]  # noqa: E731
    return np.clip(img, 0, 255).astype(np.float32), bool(lum(ink) < lum(bg))


_FACES = {
    # strokes in a unit box (x 0-1, y 0-2, y down); each a polyline
    "1flag": [[(0.15, 0.45), (0.6, 0.0), (0.6, 2.0)]],
    "1flagfoot": [[(0.15, 0.45), (0.6, 0.0), (0.6, 2.0)], [(0.2, 2.0), (1.0, 2.0)]],
    "1longflag": [[(0.05, 0.7), (0.6, 0.0), (0.6, 2.0)]],
    "7": [[(0.0, 0.0), (1.0, 0.0), (0.35, 2.0)]],
    "7bar": [[(0.0, 0.0), (1.0, 0.0), (0.35, 2.0)], [(0.3, 1.0), (0.95, 1.0)]],
    "7hook": [[(0.0, 0.25), (0.0, 0.0), (1.0, 0.0), (0.45, 2.0)]],
    "4closed": [[(0.75, 2.0), (0.75, 0.0), (0.0, 1.4), (1.0, 1.4)]],
    "4open": [[(0.45, 0.0), (0.05, 1.4), (1.0, 1.4)], [(0.75, 0.6), (0.75, 2.0)]],
}
_FACE_DIGIT = {"1flag": 1, "1flagfoot": 1, "1longflag": 1, "7": 7, "7bar": 7, "7hook": 7, "4closed": 4, "4open": 4}


def _face_mask(name: str, rng: np.random.Generator) -> np.ndarray:
    """An ink mask (tight) of a stroke-drawn printed face from :data:`_FACES`."""
    import cv2

    w, h = rng.uniform(45, 65), 100.0
    thick = int(rng.integers(6, 17))
    img = np.zeros((int(h + 60), int(w + 60)), np.float32)
    slant = math.tan(math.radians(rng.uniform(-3, 12)))
    for line in _FACES[name]:
        pts = np.array([[30 + x * w + (2 - y) * h / 2 * slant, 30 + y * h / 2] for x, y in line]) * 4
        cv2.polylines(img, [np.rint(pts).astype(np.int32)], False, 1.0, thick, cv2.LINE_AA, 2)
    return tight(elastic(np.pad(img, 8), rng, alpha=float(rng.uniform(0.5, 2.0))))


def camera(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Photograph a display: float BGR (0-255, about 100 px a digit) -> uint8 BGR at 20-110 px tall.

    Perspective tilt and a small rotation, glare, a log-uniform size of 20-110 px, blur,
    sensor noise and JPEG (six in ten).
    """
    import cv2

    h, w = scene.shape[:2]
    # tilt: the four corners moved by up to 8% of the size, plus rotation of up to 4 degrees
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jit = rng.uniform(-0.08, 0.08, (4, 2)) * np.float32([w, h])
    ang = math.radians(rng.uniform(-4, 4))
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    dst = ((src - [w / 2, h / 2]) @ rot.T + [w / 2, h / 2] + jit).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    img = cv2.warpPerspective(scene, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.3:  # glare: a bright soft spot
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(0.1, 0.4) * max(h, w)
        spot = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * s * s))
        img = img + spot[..., None] * rng.uniform(40, 160)
    gain = rng.uniform(0.7, 1.2)
    img = img * gain + rng.uniform(-20, 20)
    target = float(np.exp(rng.uniform(np.log(20), np.log(110))))
    f = target / h
    nh, nw = max(8, round(h * f)), max(6, round(w * f))
    img = cv2.resize(img.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    sigma = rng.uniform(0.0, 0.9) * max(1.0, nh / 40)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), float(sigma))
    img = img + rng.normal(0, rng.uniform(0, 9), img.shape)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 96))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def _one(
    kind: str, digit: int, rng: np.random.Generator, fonts: Sequence[Path]
) -> tuple[np.ndarray, int, float] | None:
    """Draw one crop of ``kind``: (28x28 crop, label, value), or None when nothing is left."""
    from convert.render import ink_crop
    from edge_infer import to_mnist

    value = float(digit)
    if kind == "faces":
        names = [k for k, v in _FACE_DIGIT.items() if v == digit]
        crop = ink_crop(_face_mask(names[int(rng.integers(len(names)))], rng), rng)
        return None if crop is None else (crop, digit, value)
    if kind == "drum":
        if rng.random() < ROLLING_SHARE:
            value = (digit + rng.uniform(0.3, 0.7)) % 10
        else:
            value = (digit + rng.uniform(-0.2, 0.2)) % 10
        value = round(value, 2)
        scene, dark = _drum_scene(value, rng, fonts)
        label = drum_label(value)
    else:
        scene, dark = _segment_scene(digit, kind, rng)
        label = digit
    if min(scene.shape[:2]) < 8:
        return None
    crop = to_mnist(camera(scene, rng), invert=dark)
    if int(crop.max()) < 128 or (crop > 128).mean() > MAX_FILL:
        return None
    return crop, label, value


def _generate(n: int, seed: object, fonts: Sequence[Path], kinds: dict[str, float]) -> DisplaySet:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    names = sorted(kinds)
    if not names or any(k not in KINDS for k in names):
        raise ValueError(f"kinds must be some of {sorted(KINDS)}, got {names}")
    p = np.array([kinds[k] for k in names], np.float64)
    rng = np.random.default_rng(seed)
    digits = rng.permutation(np.arange(n) % 10)
    which = rng.choice(len(names), size=n, p=p / p.sum())
    x = np.zeros((n, 28, 28), np.uint8)
    y = np.zeros(n, np.uint8)
    kind = np.empty(n, dtype="<U8")
    value = np.zeros(n, np.float32)
    for i in range(n):
        k = names[int(which[i])]
        if k == "faces" and int(digits[i]) not in _FACE_DIGIT.values():
            k = "lcd7"  # the special faces are 1s, 4s and 7s; the other digits come as LCDs
        for _ in range(20):
            got = _one(k, int(digits[i]), rng, fonts)
            if got is not None:
                x[i], y[i], value[i] = got
                kind[i] = k
                break
        else:
            raise RuntimeError(f"could not draw a {k} {digits[i]} in 20 tries (crop {i} of {n})")
    return DisplaySet(x, y, kind, value)


def draw_displays(
    n: int, seed: int, *, kinds: dict[str, float] | None = None, fonts: Sequence[str | Path] = ()
) -> DisplaySet:
    """Draw ``n`` display crops for training, with their kind and drum value.

    Args:
        n: how many (the ten digits in equal numbers, give or take one; a drum drawn
            between two digits is labelled 10).
        seed: seeds every draw; the same seed gives the same arrays.
        kinds: kind -> share (default :data:`KINDS`).
        fonts: extra TrueType fonts for the drums, besides Liberation (DejaVu is skipped).

    Returns:
        The crops.

    Raises:
        ValueError: ``n`` is negative or a kind is unknown.

    >>> s = draw_displays(12, seed=1)
    >>> s.x.shape, s.x.dtype, s.y.shape, bool(s.y.max() <= 10)
    ((12, 28, 28), dtype('uint8'), (12,), True)
    """
    ttf = find_fonts(fonts)
    if not ttf:
        raise ValueError("no TrueType font for the drums: install fonts-liberation or pass fonts")
    log.info("drawing %d display digits (seed %d)", n, seed)
    return _generate(n, [_STREAM, seed], ttf, kinds or KINDS)


def make_displays(n: int, seed: int, *, fonts: Sequence[str | Path] = ()) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` of :func:`draw_displays`: uint8 ``(n, 28, 28)`` and uint8 ``(n,)`` in 0-10."""
    s = draw_displays(n, seed, fonts=fonts)
    return s.x, s.y


def heldout_displays(n: int, seed: int = 765_432) -> DisplaySet:
    """Display crops for evaluation only: another seed stream, DejaVu fonts on the drums.

    Without DejaVu installed the drums use the training fonts (the figure then measures
    unseen draws, not unseen fonts).
    """
    fonts = dejavu_fonts() or find_fonts()
    log.info("drawing %d held-out display digits (seed %d)", n, seed)
    return _generate(n, [_HELDOUT_STREAM, seed], fonts, KINDS)
