"""MNIST-style crops of *printed* digits 0-9: positives from fonts, beside MNIST's handwriting.

MNIST has only handwriting. A model trained on it plus the "not a digit" negatives of
:mod:`convert.negatives` (letters and symbols from fonts) learns that "drawn from a
font" means "not a digit", and turns down printed digits, serif ones above all (a
serif 1, 4, 6 or 8). These crops teach it the printed shapes as their digits.

Each crop is one digit drawn by :mod:`convert.render`, the very renderer of the
negatives: a TrueType face (six in ten, when Hershey is on) or an OpenCV Hershey face
(four in ten; script faces excluded), the same elastic wobble, slant, small rotation,
stroke weight, size of 20-120 px, uneven paper, blur and noise, then
:func:`edge_infer.image.preprocess.to_mnist`. Positives and negatives so differ only in
what they show, not in how they were drawn.

TrueType fonts are the Liberation family (Sans, Serif, Mono, Sans Narrow; regular,
bold, italic, bold italic) plus any ``.ttf``/``.otf`` in the ``fonts`` argument; DejaVu
is never used for training (the scene tests draw with DejaVu). :func:`heldout_printed`
draws with DejaVu *only*, no Hershey and another seed, for evaluation.

The ten digits come in equal numbers, in a random order. Everything is drawn from
a generator seeded by ``seed`` (its own stream, so the same seed gives different draws
here than in :func:`convert.negatives.make_negatives`); the same seed and fonts give
the same arrays on every machine. Needs OpenCV and Pillow.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from convert.render import HERSHEY_FACES, dejavu_fonts, elastic, find_fonts, hershey_text, ink_crop, ttf_text

__all__ = ["DIGITS", "heldout_printed", "make_printed"]

log = logging.getLogger(__name__)

DIGITS = "0123456789"
_STREAM = 0x5052  # mixed into the seed: printed digits and negatives draw from different streams


def _glyph(digit: int, rng: np.random.Generator, fonts: Sequence[Path], hershey: bool) -> np.ndarray:
    """The ink mask of one digit, from a TrueType font or a Hershey face (as the negatives' letters)."""
    text = DIGITS[digit]
    if bool(fonts) and (not hershey or rng.random() < 0.6):
        m = ttf_text(fonts[int(rng.integers(len(fonts)))], text, rng)
        if rng.random() < 0.3:
            m = elastic(np.pad(m, 10), rng, alpha=float(rng.uniform(1.0, 3.0)))
        return m
    face = HERSHEY_FACES[int(rng.integers(len(HERSHEY_FACES)))]
    return hershey_text(text, face, rng)


def _generate(n: int, seed: int, fonts: Sequence[Path], *, hershey: bool) -> tuple[np.ndarray, np.ndarray]:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not fonts and not hershey:
        raise ValueError("no font to draw printed digits with: give TrueType fonts or allow Hershey")
    rng = np.random.default_rng([_STREAM, seed])
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    out = np.zeros((n, 28, 28), np.uint8)
    for i, digit in enumerate(labels):
        for _ in range(20):
            crop = ink_crop(_glyph(int(digit), rng, fonts, hershey), rng)
            if crop is not None:
                out[i] = crop
                break
        else:
            raise RuntimeError(f"could not draw a printed {digit} in 20 tries (crop {i} of {n})")
    return out, labels


def make_printed(
    n: int,
    seed: int,
    *,
    fonts: Sequence[str | os.PathLike[str]] = (),
    system_fonts: bool = True,
    hershey: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` MNIST-style crops of printed digits, for training, with their labels.

    Args:
        n: how many (the ten digits in equal numbers, give or take one).
        seed: seeds every random draw; the same seed and fonts give the same arrays.
        fonts: extra font files or directories (``.ttf``/``.otf``; DejaVu is skipped).
        system_fonts: include the Liberation fonts.
        hershey: include OpenCV's Hershey faces (not the script ones). With no
            TrueType font found, Hershey alone is used (with a warning), whatever this says.

    Returns:
        ``(images, labels)``: uint8 ``(n, 28, 28)``, white ink on black, longest side
        20 px, centred by mass, as :func:`edge_infer.image.preprocess.to_mnist` lays out a
        crop; uint8 ``(n,)`` digits 0-9.

    Raises:
        ValueError: ``n`` is negative.

    >>> x, y = make_printed(20, seed=1)
    >>> x.shape, x.dtype, sorted(set(y.tolist())) == list(range(10))
    ((20, 28, 28), dtype('uint8'), True)
    """
    ttf = find_fonts(fonts, system=system_fonts)
    if not ttf:
        log.warning("no TrueType font found (Liberation or --fonts): printed digits drawn with Hershey fonts only")
        hershey = True
    log.info(
        "drawing %d printed digits (seed %d) from %d TrueType font(s)%s", n, seed, len(ttf), " + Hershey" * hershey
    )
    return _generate(n, seed, ttf, hershey=hershey)


def heldout_printed(n: int, seed: int = 876_543) -> tuple[np.ndarray, np.ndarray]:
    """Printed digits for evaluation only: DejaVu fonts (never used in training), no Hershey, another seed.

    Without DejaVu installed, falls back to the training fonts (with a warning): the
    figure then measures unseen draws, not unseen fonts.

    Returns:
        ``(images, labels)`` as :func:`make_printed`.
    """
    dejavu = dejavu_fonts()
    if not dejavu:
        log.warning("no DejaVu fonts found: held-out printed digits use the training fonts")
        return make_printed(n, seed)
    log.info("drawing %d held-out printed digits (seed %d) from %d DejaVu font(s)", n, seed, len(dejavu))
    return _generate(n, seed, dejavu, hershey=False)
