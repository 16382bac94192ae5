"""Drawing synthetic crops the way the camera sees them: ink on paper, then ``to_mnist``.

Shared by :mod:`convert.negatives` (the "not a digit" class) and :mod:`convert.printed`
(printed digits), so that both are drawn by one renderer: if positives and negatives
were drawn differently, the model could learn the drawing instead of the shape.

A glyph is first an ink mask (float32 in [0, 1], tight box) from a TrueType font
(:func:`ttf_text`) or an OpenCV Hershey font (:func:`hershey_text`, with an elastic
wobble so it looks hand-drawn); :func:`photograph` turns the mask into a grayscale
photo (slant, small rotation, stroke weight, a size of 20-120 px, uneven paper,
blur, noise); :func:`ink_crop` then normalises it with
:func:`edge_infer.image.preprocess.to_mnist` (dark ink, as the frame path finds it), as the
runtime does with every crop.

Fonts: Liberation (``/usr/share/fonts/truetype/liberation``) plus any extra
directories; DejaVu is never returned by :func:`find_fonts`: the scene tests draw
with DejaVu, and :func:`dejavu_fonts` is for held-out evaluation only.

Every function takes its randomness from the ``numpy.random.Generator`` it is given.
Needs OpenCV and Pillow (imported when drawing).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEJAVU_DIR",
    "HERSHEY_FACES",
    "LIBERATION_DIR",
    "dejavu_fonts",
    "elastic",
    "find_fonts",
    "hershey_text",
    "ink_crop",
    "photograph",
    "tight",
    "ttf_text",
]

log = logging.getLogger(__name__)

LIBERATION_DIR = Path("/usr/share/fonts/truetype/liberation")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: OpenCV's Hershey faces without the two script ones: SIMPLEX, PLAIN, DUPLEX, COMPLEX, TRIPLEX, COMPLEX_SMALL.
HERSHEY_FACES = (0, 1, 2, 3, 4, 5)


def find_fonts(dirs: Sequence[str | os.PathLike[str]] = (), *, system: bool = True) -> list[Path]:
    """TrueType/OpenType files for training: Liberation plus those in ``dirs``, never DejaVu.

    Args:
        dirs: extra directories (searched recursively) or font files.
        system: include the Liberation fonts.

    Returns:
        Sorted font paths (sorted, so the same fonts give the same crops).
    """
    found: set[Path] = set()
    roots = ([LIBERATION_DIR] if system else []) + [Path(d) for d in dirs]
    for root in roots:
        if root.is_file():
            cands = [root]
        elif root.is_dir():
            cands = [p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")]
        else:
            log.warning("font path %s does not exist; ignored", root)
            continue
        for p in cands:
            if p.name.lower().startswith("dejavu"):
                log.warning("skipping %s: DejaVu fonts are kept for held-out evaluation", p)
                continue
            found.add(p)
    return sorted(found)


def dejavu_fonts() -> list[Path]:
    """The DejaVu text fonts (not DejaVu Math), for held-out evaluation only; [] when not installed."""
    if not DEJAVU_DIR.is_dir():
        return []
    return [p for p in sorted(DEJAVU_DIR.glob("DejaVu*.ttf")) if "Math" not in p.name]


@functools.lru_cache(maxsize=64)
def _ttf(path: str, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def tight(mask: np.ndarray) -> np.ndarray:
    """``mask`` cut to the box of its ink (values > 0.1); an empty array when there is none."""
    ys, xs = np.nonzero(mask > 0.1)
    if len(ys) == 0:
        return mask[:0, :0]
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def ttf_text(font: Path, text: str, rng: np.random.Generator, *, squeeze: float = 1.0) -> np.ndarray:
    """Alpha mask (float32 in [0, 1], tight) of ``text`` at 80 px; letters drawn one by one
    with their advance times ``squeeze`` so that a squeeze < 1 makes them touch."""
    from PIL import Image, ImageDraw

    f = _ttf(str(font), 80)
    w = int(90 * len(text) + 60)
    im = Image.new("L", (w, 160), 0)
    d = ImageDraw.Draw(im)
    x = 30.0
    for ch in text:
        d.text((x, 30), ch, font=f, fill=255)
        x += f.getlength(ch) * squeeze
    return tight(np.asarray(im, np.float32) / 255.0)


def hershey_text(text: str, face: int, rng: np.random.Generator, *, squeeze: float = 1.0) -> np.ndarray:
    """Alpha mask (tight) of ``text`` in Hershey ``face``: italic three times in ten, a random
    stroke of 2-8 px at scale 2.5, then an elastic wobble (:func:`elastic`)."""
    import cv2

    if rng.random() < 0.3:
        face |= cv2.FONT_ITALIC
    scale = 2.5
    thick = int(rng.integers(2, 9))
    im = np.zeros((200, int(70 * len(text) + 80)), np.uint8)
    x = 30.0
    for ch in text:
        (cw, _), _ = cv2.getTextSize(ch, face, scale, thick)
        cv2.putText(im, ch, (int(x), 130), face, scale, 255, thick, cv2.LINE_AA)
        x += cw * squeeze
    return tight(elastic(im.astype(np.float32) / 255.0, rng))


def elastic(mask: np.ndarray, rng: np.random.Generator, *, alpha: float | None = None) -> np.ndarray:
    """Smooth random displacement (hand-drawn wobble), a few pixels at glyph scale."""
    import cv2

    h, w = mask.shape
    a = float(rng.uniform(1.5, 5.0)) if alpha is None else alpha
    sigma = float(rng.uniform(8, 16))
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dx *= a / max(float(np.abs(dx).max()), 1e-6)
    dy *= a / max(float(np.abs(dy).max()), 1e-6)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx, gy + dy, cv2.INTER_LINEAR, borderValue=0)


def photograph(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tight ink mask -> a grayscale uint8 photo of dark ink on light paper."""
    import cv2

    mask = np.pad(mask, 8)
    # slant, small rotation, anisotropic scale
    h, w = mask.shape
    ang = np.deg2rad(rng.uniform(-8, 8))
    sh = rng.uniform(-0.25, 0.25)
    sx = rng.uniform(0.85, 1.15)
    a = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) @ np.array([[sx, sh], [0, 1]])
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], np.float64) @ a.T
    lo, hi = corners.min(0), corners.max(0)
    m = np.hstack([a, (-lo)[:, None]]).astype(np.float32)
    mask = cv2.warpAffine(mask, m, (int(np.ceil(hi[0] - lo[0])) + 1, int(np.ceil(hi[1] - lo[1])) + 1))
    # stroke weight
    r = rng.random()
    if r < 0.2:
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    elif r < 0.35:
        mask = cv2.erode(mask, np.ones((2, 2), np.uint8))
    mask = tight(mask)
    if mask.size == 0:
        return np.full((32, 32), 200, np.uint8)
    # size on the frame: the glyph's height, 20-120 px (log-uniform), longest side capped
    target = float(np.exp(rng.uniform(np.log(20), np.log(120))))
    f = target / max(mask.shape[0], 1)
    f = min(f, 200.0 / max(mask.shape[1], 1))
    nh, nw = max(2, round(mask.shape[0] * f)), max(2, round(mask.shape[1] * f))
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    mask = cv2.resize(mask, (nw, nh), interpolation=interp)
    pad = int(max(4, 0.25 * max(nh, nw)))
    mask = np.pad(mask, pad)
    # paper and ink
    paper = rng.uniform(165, 245)
    ink = rng.uniform(10, min(100, paper - 70))
    hh, ww = mask.shape
    gy, gx = np.mgrid[0:hh, 0:ww].astype(np.float32)
    grad = 1.0 + rng.uniform(-0.12, 0.12) * (gx / ww - 0.5) + rng.uniform(-0.12, 0.12) * (gy / hh - 0.5)
    img = (paper * (1 - mask) + ink * mask) * grad
    sigma = rng.uniform(0.0, 1.5) * max(1.0, hh / 60)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), float(sigma))
    img = img + rng.normal(0, rng.uniform(0, 8), img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def ink_crop(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """Photograph ``mask`` and normalise it as the runtime does: uint8 ``(28, 28)``, white on black.

    The normalisation is :func:`edge_infer.image.preprocess.to_mnist` told that the ink is
    dark (``invert=True``), as in a camera frame whose polarity is decided from the
    whole frame; a tight crop of a bold glyph alone can fool to_mnist's own guess.

    Returns None (drawing nothing from ``rng``) when the mask is empty or faint, and None
    when nothing is left after normalisation: the caller draws another glyph.
    """
    from edge_infer.image.preprocess import to_mnist

    if mask.size == 0 or mask.max() < 0.3:
        return None
    # The polarity is given, as the frame path decides it for the whole frame: guessed
    # from a tight crop, it flips for about one bold glyph in five (a blob for a "9").
    crop = to_mnist(photograph(np.clip(mask, 0, 1), rng), invert=True)
    if int(crop.max()) < 128:
        return None
    return crop
