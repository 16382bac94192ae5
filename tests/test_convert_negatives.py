"""convert.negatives: the "not a digit" crops, drawn and normalised like the runtime's crops."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from convert import negatives as negmod
from convert.negatives import EXCLUDED_LETTERS, LETTERS, find_fonts, heldout_negatives, make_negatives
from convert.render import photograph

from .conftest import assert_mnist_convention

pytest.importorskip("cv2")
pytest.importorskip("PIL")

LOOK_ALIKES = "OoQDlIijZzSsBbgqG|"


@pytest.fixture(scope="module")
def negs():
    return make_negatives(120, seed=7)


def test_shape_dtype_range(negs):
    assert negs.shape == (120, 28, 28) and negs.dtype == np.uint8
    assert (negs.reshape(len(negs), -1).max(axis=1) >= 128).all()  # every crop has ink
    assert make_negatives(0, seed=1).shape == (0, 28, 28)
    with pytest.raises(ValueError, match="n must be >= 0"):
        make_negatives(-1, seed=1)


def test_deterministic_by_seed(negs):
    np.testing.assert_array_equal(make_negatives(120, seed=7), negs)
    assert not np.array_equal(make_negatives(120, seed=8), negs)


def test_mnist_convention(negs):
    """White ink on black, longest side of the ink box 20 px, centre of mass at the centre."""
    assert_mnist_convention(negs)


def test_photos_are_dark_ink_on_light_paper():
    """The drawn photo is dark on light, and to_mnist's own polarity guess agrees."""
    from edge_infer.image.preprocess import to_mnist

    fonts = find_fonts()
    rng = np.random.default_rng(3)
    mask = negmod._glyph("letter", rng, fonts, True)
    photo = photograph(mask, rng)
    assert photo.dtype == np.uint8 and photo.ndim == 2
    assert np.median(photo) > 150  # light paper, dark ink
    np.testing.assert_array_equal(to_mnist(photo, invert=True), to_mnist(photo))


def test_look_alikes_are_never_drawn(monkeypatch):
    assert set(LOOK_ALIKES) - {"|"} <= EXCLUDED_LETTERS
    assert not set(LETTERS) & set(LOOK_ALIKES)
    drawn: list[str] = []
    real_ttf, real_hershey = negmod._ttf_text, negmod._hershey_text
    monkeypatch.setattr(negmod, "_ttf_text", lambda f, t, *a, **k: drawn.append(t) or real_ttf(f, t, *a, **k))
    monkeypatch.setattr(negmod, "_hershey_text", lambda t, *a, **k: drawn.append(t) or real_hershey(t, *a, **k))
    make_negatives(300, seed=11)
    heldout_negatives(100, seed=12)
    assert len(drawn) > 150
    chars = set("".join(drawn))
    assert not chars & set(LOOK_ALIKES), sorted(chars & set(LOOK_ALIKES))
    assert "/" not in drawn and "\\" not in drawn and "!" not in chars  # one-stroke symbols never alone
    assert not {"()", "[]", "<>"} & set(drawn)  # empty pairs close into a 0


def test_no_dejavu_in_training(monkeypatch, tmp_path, caplog):
    fonts = find_fonts()
    assert fonts and all("liberation" in str(p).lower() for p in fonts)
    # a --fonts dir holding DejaVu: skipped with a warning
    fake = tmp_path / "DejaVuSans.ttf"
    fake.write_bytes(b"not a font")
    with caplog.at_level(logging.WARNING, logger="convert.render"):
        assert find_fonts([tmp_path]) == fonts
    assert "DejaVu fonts are kept for held-out evaluation" in caplog.text
    used: set[str] = set()
    real = negmod._ttf_text
    monkeypatch.setattr(negmod, "_ttf_text", lambda f, *a, **k: used.add(Path(f).name) or real(f, *a, **k))
    make_negatives(150, seed=5, fonts=[negmod.DEJAVU_DIR])
    assert used and not any(n.lower().startswith("dejavu") for n in used)
    used.clear()
    heldout_negatives(40, seed=5)
    assert used and all(n.startswith("DejaVu") for n in used)


def test_no_ttf_falls_back_to_hershey(caplog):
    with caplog.at_level(logging.WARNING, logger="convert.negatives"):
        x = make_negatives(20, seed=2, system_fonts=False, hershey=False)
    assert x.shape == (20, 28, 28) and "Hershey fonts only" in caplog.text


def test_differs_from_mnist_digits(negs, mnist):
    """Negatives are not digits in disguise: far from every one of 2,000 MNIST digits."""
    d = mnist.x_train[:2000].reshape(2000, -1).astype(np.float32) / 255
    n = negs.reshape(len(negs), -1).astype(np.float32) / 255
    dist = ((n**2).sum(1)[:, None] + (d**2).sum(1)[None, :] - 2 * n @ d.T).clip(0) ** 0.5
    dd = ((d[:200, None, :] - d[None, 200:400, :]) ** 2).sum(-1) ** 0.5
    # a negative's nearest digit is no closer than a typical digit's nearest other digit
    assert np.median(dist.min(axis=1)) > np.median(dd.min(axis=1))
