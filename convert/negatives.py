"""MNIST-style crops of things that are *not* digits: the 11th class, "not a digit".

Each negative is drawn as dark ink on light paper at a random size (glyph about
20-120 px tall), stroke weight, slant and small rotation, with blur, an uneven
paper tone and sensor noise, and then goes through :func:`edge_infer.preprocess.to_mnist`,
the very normalisation the runtime applies to a crop before the model sees it.

Kinds of negative (share of the set):

- letters (45%) from TrueType fonts and OpenCV's Hershey fonts (the Hershey
  ones get a random affine and elastic distortion so they look hand-drawn);
- pieces of 2-3 letters touching each other (15%), as in script or tight text;
- punctuation and symbols (15%);
- line fragments (15%): grid crossings, T-junctions, three grid corners, ruled
  line pairs, a near-horizontal dash;
- blobs and smudges (10%).

A negative must never look like a digit after normalisation, or the model learns
to reject real digits. Left out on purpose:

- letters like a digit, :data:`EXCLUDED_LETTERS`: ``O o Q D U`` (0), ``I l i j J T``
  (1, 7), ``Z z`` (2), ``S s`` (5), ``B`` (8), ``b G`` (6), ``g q`` (9); Hershey script
  capitals (loops and swashes that pass for a 2 or a 3) are not drawn at all;
- symbols that are one straight or curved stroke: ``/ \\ | ( ) [ ]`` alone (a
  1); brackets appear only around a letter (``(a)``, ``[k]``), never as an empty
  pair (``()``, ``[]`` and ``<>`` touching close into a ring: a 0); ``!`` (a 1 with
  a speck under it);
- a single straight stroke unless it is within 15 degrees of horizontal; a
  grid corner shaped like a 7 (bar on top, stem down from its right end);
- rings (a 0) and elongated blobs (a 1): blobs are filled, aspect at most 1.6.

TrueType fonts are the Liberation family in ``/usr/share/fonts/truetype/liberation``
plus any ``.ttf``/``.otf`` in the ``fonts`` argument. DejaVu fonts are never used for
training: the scene tests draw their letters with DejaVu and stay held out.
:func:`heldout_negatives` draws with DejaVu *only* (and no Hershey), so the
evaluation measures rejection on fonts the model never saw.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same seed and
fonts give the same array on every machine. Needs OpenCV and Pillow.
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
    "EXCLUDED_LETTERS",
    "LETTERS",
    "SYMBOLS",
    "find_fonts",
    "heldout_negatives",
    "make_negatives",
]

log = logging.getLogger(__name__)

LIBERATION_DIR = Path("/usr/share/fonts/truetype/liberation")
DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")

#: Letters never drawn: each looks like a digit in some font or hand (0, 1, 7, 2, 5, 8, 6, 9).
EXCLUDED_LETTERS = frozenset("OoQDIlijJTZzSsBbgqGU")
#: Letters drawn as negatives (upper and lower case, look-alikes removed).
LETTERS = "".join(c for c in "ACEFHKLMNPRVWXYacdefhkmnprtuvwxy" if c not in EXCLUDED_LETTERS)
#: Symbols drawn on their own; one-stroke symbols (/ \\ | ( ) [ ]) only in combinations.
SYMBOLS = ("+", "-", "=", "*", "%", "#", "@", "&", "$", "?", "<", ">", "~", ":", ";")
_COMBOS = ("(a)", "(x)", "[k]", "{e}", "a/", "/x", "\\n", "+-", "=>", "->", "#?", "%&", "<<", ">>")
_KIND_P = {"letter": 0.45, "piece": 0.15, "symbol": 0.15, "lines": 0.15, "blob": 0.10}
# Hershey script capitals are loops and swashes that can pass for a 2 or a 3: lower case only there.
_SCRIPT_LETTERS = "".join(c for c in LETTERS if c.islower())


def find_fonts(dirs: Sequence[str | os.PathLike[str]] = (), *, system: bool = True) -> list[Path]:
    """TrueType/OpenType files for the negatives: Liberation plus those in ``dirs``, never DejaVu.

    Args:
        dirs: extra directories (searched recursively) or font files.
        system: include the Liberation fonts.

    Returns:
        Sorted font paths (sorted, so the same fonts give the same negatives).
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


@functools.lru_cache(maxsize=64)
def _ttf(path: str, size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _tight(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask > 0.1)
    if len(ys) == 0:
        return mask[:0, :0]
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _ttf_text(font: Path, text: str, rng: np.random.Generator, *, squeeze: float = 1.0) -> np.ndarray:
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
    return _tight(np.asarray(im, np.float32) / 255.0)


def _hershey_text(text: str, rng: np.random.Generator, *, squeeze: float = 1.0) -> np.ndarray:
    import cv2

    fonts = [0, 1, 2, 3, 4, 5, 6, 7]  # every Hershey face, incl. the two script ones
    face = int(rng.choice(fonts))
    if face in (cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX):
        text = "".join(
            c if c in _SCRIPT_LETTERS or not c.isalpha() else str(rng.choice(list(_SCRIPT_LETTERS))) for c in text
        )
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
    return _tight(_elastic(im.astype(np.float32) / 255.0, rng))


def _elastic(mask: np.ndarray, rng: np.random.Generator, *, alpha: float | None = None) -> np.ndarray:
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


def _lines(rng: np.random.Generator) -> np.ndarray:
    """Line fragments: crossings, T-junctions, grid corners (not the 7-like one), ruled pairs, a dash."""
    import cv2

    s = 100
    im = np.zeros((s + 40, s + 40), np.uint8)
    t = int(rng.integers(3, 10))
    o = 20
    kind = str(rng.choice(["cross", "tee", "corner", "grid", "ruled", "dash", "xcross"]))
    if kind == "cross":  # '+' with uneven arms
        cy, cx = o + int(rng.uniform(0.35, 0.65) * s), o + int(rng.uniform(0.35, 0.65) * s)
        cv2.line(im, (o, cy), (o + s, cy), 255, t)
        cv2.line(im, (cx, o), (cx, o + s), 255, t)
    elif kind == "xcross":
        cv2.line(im, (o, o), (o + s, o + s), 255, t)
        cv2.line(im, (o + s, o), (o, o + s), 255, t)
    elif kind == "tee":  # stem joins the bar in its middle part: a T, not a 7
        at = o + int(rng.uniform(0.3, 0.7) * s)
        stem = int(rng.uniform(0.5, 1.0) * s)
        cv2.line(im, (o, o), (o + s, o), 255, t)
        cv2.line(im, (at, o), (at, o + stem), 255, t)
        im = np.rot90(im, int(rng.integers(0, 4))).copy()
    elif kind == "corner":  # ┌ └ ┘ (┐ is a 7)
        a, b = int(rng.uniform(0.5, 1.0) * s), int(rng.uniform(0.5, 1.0) * s)
        cv2.line(im, (o, o), (o + a, o), 255, t)
        cv2.line(im, (o, o), (o, o + b), 255, t)
        im = np.rot90(im, int(rng.integers(0, 3))).copy()  # a fourth quarter turn would make it a 7
    elif kind == "grid":  # a corner of squared paper: two by two lines
        for p in (0.3, 0.7):
            q = o + int((p + rng.uniform(-0.1, 0.1)) * s)
            cv2.line(im, (o, q), (o + s, q), 255, t)
            cv2.line(im, (q, o), (q, o + s), 255, t)
    elif kind == "ruled":  # two or three near-horizontal parallel lines
        n = int(rng.integers(2, 4))
        for i in range(n):
            y = o + int((i + 0.5) * s / n)
            cv2.line(im, (o, y), (o + s, y), 255, t)
    else:  # a near-horizontal dash
        y = o + s // 2
        cv2.line(im, (o, y), (o + int(rng.uniform(0.4, 1.0) * s), y), 255, t)
    return _tight(im.astype(np.float32) / 255.0)


def _blob(rng: np.random.Generator) -> np.ndarray:
    """A filled smudge (aspect <= 1.6) or a cluster of dots."""
    import cv2

    im = np.zeros((140, 140), np.uint8)
    if rng.random() < 0.6:
        n = int(rng.integers(6, 12))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(25, 45) * rng.uniform(0.75, 1.0, n)
        ax = rng.uniform(1.0, 1.6)
        pts = np.stack([70 + r * np.cos(ang) * ax, 70 + r * np.sin(ang)], axis=1).astype(np.int32)
        cv2.fillPoly(im, [pts], 255)
        m = im.astype(np.float32) / 255.0
        rot = cv2.getRotationMatrix2D((70, 70), float(rng.uniform(-20, 20)), 1.0)
        m = cv2.warpAffine(m, rot, (140, 140))
    else:
        k = int(rng.integers(2, 5))
        for _ in range(k):
            c = (int(rng.uniform(30, 110)), int(rng.uniform(40, 100)))
            cv2.circle(im, c, int(rng.uniform(6, 14)), 255, -1)
        m = im.astype(np.float32) / 255.0
    return _tight(cv2.GaussianBlur(m, (0, 0), 2.0))


def _glyph(kind: str, rng: np.random.Generator, fonts: Sequence[Path], hershey: bool) -> np.ndarray:
    use_ttf = bool(fonts) and (not hershey or rng.random() < 0.6)
    if kind in ("letter", "piece", "symbol"):
        if kind == "letter":
            text = str(rng.choice(list(LETTERS)))
            squeeze = 1.0
        elif kind == "piece":
            text = "".join(rng.choice(list(LETTERS), int(rng.integers(2, 4))))
            squeeze = float(rng.uniform(0.6, 0.95))
        else:
            pool = list(SYMBOLS) + list(_COMBOS)
            text = str(rng.choice(pool))
            squeeze = float(rng.uniform(0.8, 1.0))
        if use_ttf:
            m = _ttf_text(fonts[int(rng.integers(len(fonts)))], text, rng, squeeze=squeeze)
            if rng.random() < 0.3:
                m = _elastic(np.pad(m, 10), rng, alpha=float(rng.uniform(1.0, 3.0)))
            return m
        return _hershey_text(text, rng, squeeze=squeeze)
    if kind == "lines":
        return _elastic(np.pad(_lines(rng), 10), rng, alpha=float(rng.uniform(0.0, 2.5)))
    return _blob(rng)


def _photograph(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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
    mask = _tight(mask)
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


def _generate(n: int, seed: int, fonts: Sequence[Path], *, hershey: bool) -> np.ndarray:
    from edge_infer.preprocess import to_mnist

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    kinds = list(_KIND_P)
    probs = np.array([_KIND_P[k] for k in kinds])
    out = np.zeros((n, 28, 28), np.uint8)
    i = tries = 0
    while i < n:
        tries += 1
        if tries > 20 * n + 100:
            raise RuntimeError(f"could not draw {n} negatives ({i} after {tries} tries)")
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        mask = _glyph(kind, rng, fonts, hershey)
        if mask.size == 0 or mask.max() < 0.3:
            continue
        crop = to_mnist(_photograph(np.clip(mask, 0, 1), rng))  # as the runtime calls it
        if int(crop.max()) < 128:  # nothing left after normalisation
            continue
        out[i] = crop
        i += 1
    return out


def make_negatives(
    n: int,
    seed: int,
    *,
    fonts: Sequence[str | os.PathLike[str]] = (),
    system_fonts: bool = True,
    hershey: bool = True,
) -> np.ndarray:
    """Draw ``n`` MNIST-style crops of non-digits for training the "not a digit" class.

    Args:
        n: how many.
        seed: seeds every random draw; the same seed and fonts give the same array.
        fonts: extra font files or directories (``.ttf``/``.otf``; DejaVu is skipped).
        system_fonts: include the Liberation fonts.
        hershey: include OpenCV's Hershey fonts. With no TrueType font found,
            Hershey alone is used (with a warning), whatever this says.

    Returns:
        uint8 ``(n, 28, 28)``: white ink on black, longest side 20 px, centred by
        mass, as :func:`edge_infer.preprocess.to_mnist` lays out a crop.

    Raises:
        ValueError: ``n`` is negative.
    """
    ttf = find_fonts(fonts, system=system_fonts)
    if not ttf:
        log.warning("no TrueType font found (Liberation or --fonts): negatives drawn with Hershey fonts only")
        hershey = True
    log.info("drawing %d negatives (seed %d) from %d TrueType font(s)%s", n, seed, len(ttf), " + Hershey" * hershey)
    return _generate(n, seed, ttf, hershey=hershey)


def heldout_negatives(n: int, seed: int = 987_654) -> np.ndarray:
    """Negatives for evaluation only: DejaVu fonts (never used in training), no Hershey, another seed.

    Without DejaVu installed, falls back to the training fonts (with a warning): the
    figure then measures unseen draws, not unseen fonts.
    """
    dejavu = sorted(DEJAVU_DIR.glob("DejaVu*.ttf")) if DEJAVU_DIR.is_dir() else []
    dejavu = [p for p in dejavu if "Math" not in p.name]
    if not dejavu:
        log.warning("no DejaVu fonts in %s: held-out negatives use the training fonts", DEJAVU_DIR)
        return make_negatives(n, seed)
    return _generate(n, seed, dejavu, hershey=False)
