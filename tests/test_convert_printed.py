"""convert.printed: printed digits 0-9 drawn like the negatives, labelled with their digit."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from convert import printed as prmod
from convert.negatives import make_negatives
from convert.printed import DIGITS, heldout_printed, make_printed
from convert.render import DEJAVU_DIR, HERSHEY_FACES, find_fonts

from .conftest import assert_mnist_convention

pytest.importorskip("cv2")
pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def printed():
    return make_printed(200, seed=7)


def _spy(monkeypatch):
    """Record, in order, the digit of every glyph that became a crop, and the fonts and faces used."""
    drawn: list[int] = []
    fonts: list[str] = []
    faces: list[int] = []
    pending: list[int] = []
    real_glyph, real_crop = prmod._glyph, prmod.ink_crop
    real_ttf, real_hershey = prmod.ttf_text, prmod.hershey_text

    def glyph(digit, *a, **k):
        pending[:] = [digit]
        return real_glyph(digit, *a, **k)

    def crop(mask, rng):
        out = real_crop(mask, rng)
        if out is not None:
            drawn.append(pending[0])
        return out

    def ttf(font, text, *a, **k):
        fonts.append(Path(font).name)
        assert text == DIGITS[pending[0]]
        return real_ttf(font, text, *a, **k)

    def hershey(text, face, *a, **k):
        faces.append(face)
        assert text == DIGITS[pending[0]]
        return real_hershey(text, face, *a, **k)

    monkeypatch.setattr(prmod, "_glyph", glyph)
    monkeypatch.setattr(prmod, "ink_crop", crop)
    monkeypatch.setattr(prmod, "ttf_text", ttf)
    monkeypatch.setattr(prmod, "hershey_text", hershey)
    return drawn, fonts, faces


def test_shape_dtype_balance(printed):
    x, y = printed
    assert x.shape == (200, 28, 28) and x.dtype == np.uint8
    assert y.shape == (200,) and y.dtype == np.uint8
    assert Counter(y.tolist()) == {d: 20 for d in range(10)}  # every digit equally often
    assert (x.reshape(len(x), -1).max(axis=1) >= 128).all()  # every crop has ink
    x0, y0 = make_printed(0, seed=1)
    assert x0.shape == (0, 28, 28) and y0.shape == (0,)
    with pytest.raises(ValueError, match="n must be >= 0"):
        make_printed(-1, seed=1)


def test_each_label_is_the_digit_drawn(monkeypatch):
    drawn, _, _ = _spy(monkeypatch)
    _, y = make_printed(150, seed=3)
    assert drawn == y.tolist()


def test_labels_agree_with_a_digit_reader(printed):
    """Independent of the generator: the shipped digit model reads the crops as their labels."""
    from edge_infer import load_model

    x, y = printed
    with load_model(delegate="cpu") as m:
        pred = m.run(x[..., None] / 255.0)[:, :10].argmax(axis=1)
    assert (pred == y).mean() >= 0.9, (pred == y).mean()


def test_deterministic_by_seed(printed):
    x, y = printed
    x2, y2 = make_printed(200, seed=7)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    assert not np.array_equal(make_printed(200, seed=8)[0], x)
    # its own stream: not the negatives' draws with the same seed
    assert not np.array_equal(make_negatives(20, seed=7), x[:20])


def test_mnist_convention(printed):
    """White ink on black, longest side of the ink box 20 px, centre of mass at the centre."""
    x, _ = printed
    assert_mnist_convention(x)


def test_liberation_and_hershey_never_dejavu_nor_script(monkeypatch):
    import cv2

    _, fonts, faces = _spy(monkeypatch)
    make_printed(400, seed=5, fonts=[DEJAVU_DIR])  # a --fonts dir of DejaVu is skipped
    liberation = {p.name for p in find_fonts()}
    assert len(liberation) == 16  # Sans, Serif, Mono, Sans Narrow x regular, bold, italic, bold italic
    assert set(fonts) == liberation  # every face drawn, nothing else
    script = {cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, cv2.FONT_HERSHEY_SCRIPT_COMPLEX}
    assert faces and set(faces) <= set(HERSHEY_FACES) and not set(faces) & script
    assert 0.25 < len(faces) / (len(faces) + len(fonts)) < 0.55  # four in ten from Hershey


def test_heldout_is_dejavu_only(monkeypatch):
    _, fonts, faces = _spy(monkeypatch)
    x, y = heldout_printed(60)
    assert x.shape == (60, 28, 28) and sorted(set(y.tolist())) == list(range(10))
    assert fonts and all(n.startswith("DejaVu") and "Math" not in n for n in fonts)
    assert not faces  # no Hershey
    np.testing.assert_array_equal(heldout_printed(60)[0], x)


def test_no_font_at_all_is_refused():
    with pytest.raises(ValueError, match="no font to draw printed digits"):
        prmod._generate(5, 1, [], hershey=False)
