"""MNIST-style crops of things that are *not* digits: the 11th class, "not a digit".

Each negative is drawn as dark ink on light paper at a random size (glyph about
20-120 px tall), stroke weight, slant and small rotation, with blur, an uneven
paper tone and sensor noise, and then goes through :func:`edge_infer.image.preprocess.to_mnist`,
the very normalisation the runtime applies to a crop before the model sees it.
The renderer is :mod:`convert.render`, shared with the printed digits of
:mod:`convert.printed`, so positives and negatives differ only in their shapes.

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

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convert.render import DEJAVU_DIR, LIBERATION_DIR, dejavu_fonts, find_fonts, hershey_text, ink_crop
from convert.render import elastic as _elastic
from convert.render import tight as _tight
from convert.render import ttf_text as _ttf_text

__all__ = [
    "EXCLUDED_LETTERS",
    "LETTERS",
    "SYMBOLS",
    "DEJAVU_DIR",
    "LIBERATION_DIR",
    "find_fonts",
    "heldout_negatives",
    "make_negatives",
]

log = logging.getLogger(__name__)

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


def _hershey_text(text: str, rng: np.random.Generator, *, squeeze: float = 1.0) -> np.ndarray:
    import cv2

    fonts = [0, 1, 2, 3, 4, 5, 6, 7]  # every Hershey face, incl. the two script ones
    face = int(rng.choice(fonts))
    if face in (cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX):
        text = "".join(
            c if c in _SCRIPT_LETTERS or not c.isalpha() else str(rng.choice(list(_SCRIPT_LETTERS))) for c in text
        )
    return hershey_text(text, face, rng, squeeze=squeeze)


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


def _generate(n: int, seed: int, fonts: Sequence[Path], *, hershey: bool) -> np.ndarray:
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
        crop = ink_crop(_glyph(kind, rng, fonts, hershey), rng)
        if crop is None:  # an empty glyph, or nothing left after normalisation
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
        mass, as :func:`edge_infer.image.preprocess.to_mnist` lays out a crop.

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
    dejavu = dejavu_fonts()
    if not dejavu:
        log.warning("no DejaVu fonts in %s: held-out negatives use the training fonts", DEJAVU_DIR)
        return make_negatives(n, seed)
    return _generate(n, seed, dejavu, hershey=False)
