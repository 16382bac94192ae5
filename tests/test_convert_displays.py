"""convert.displays (display digits drawn as a camera sees them) and convert.meterdigits (real meter crops)."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest

from convert.displays import KINDS, draw_displays, drum_label, heldout_displays, make_displays
from convert.meterdigits import DEFAULT_DIR, load_meter_digits, rolling_safe, safe_answers
from convert.segments import seven_segment

from .conftest import assert_mnist_convention

pytest.importorskip("cv2")
pytest.importorskip("PIL")


@pytest.fixture(scope="module")
def drawn():
    return draw_displays(120, seed=11)


def test_shapes_labels_and_layout(drawn):
    assert drawn.x.shape == (120, 28, 28) and drawn.x.dtype == np.uint8
    assert drawn.y.shape == drawn.kind.shape == drawn.value.shape == (120,)
    assert set(drawn.kind.tolist()) <= set(KINDS)
    assert drawn.y.max() <= 10
    # only a drum between two digits is "not a digit"; every other crop is its digit
    assert set(drawn.kind[drawn.y == 10].tolist()) <= {"drum"}
    not_drum = drawn.kind != "drum"
    np.testing.assert_array_equal(drawn.y[not_drum], drawn.value[not_drum].astype(np.uint8))
    assert [drum_label(v) for v in drawn.value[~not_drum]] == drawn.y[~not_drum].tolist()
    # the ten digits in equal numbers before rolling drums took some of them
    assert Counter((drawn.y[not_drum]).tolist()).most_common(1)[0][1] <= 24
    # the MNIST layout: black background, ink box 20 px on its longest side (to_mnist's layout; a
    # decimal point or colon beside the digit moves the centre of mass, so only most crops are checked)
    x = drawn.x
    border = np.concatenate([x[:, :2].reshape(len(x), -1), x[:, -2:].reshape(len(x), -1)], axis=1).max(axis=1)
    assert (border < 10).mean() > 0.9
    side = [max(np.ptp(np.nonzero(im > 64)[0]), np.ptp(np.nonzero(im > 64)[1])) + 1 for im in x]
    assert np.mean([17 <= s <= 23 for s in side]) > 0.9
    assert_mnist_convention(drawn.x[(drawn.kind == "drum") & (drawn.y < 10)][:10])


def test_same_seed_same_crops_other_seed_other_crops(drawn):
    again = draw_displays(120, seed=11)
    np.testing.assert_array_equal(again.x, drawn.x)
    np.testing.assert_array_equal(again.y, drawn.y)
    other = draw_displays(120, seed=12)
    assert not np.array_equal(other.x, drawn.x)
    held = heldout_displays(40)
    assert not np.array_equal(held.x, drawn.x[:40])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_draws_its_digits(kind):
    s = draw_displays(30, seed=5, kinds={kind: 1.0})
    if kind == "faces":  # special faces are 1s, 4s and 7s; the other digits come as seven-segment LCDs
        assert set(s.y[s.kind == "faces"].tolist()) <= {1, 4, 7}
        assert (s.kind == "faces").sum() >= 6
    else:
        assert set(s.kind.tolist()) == {kind}
    assert (s.x.reshape(30, -1).max(axis=1) >= 128).all()  # ink in every crop
    assert sorted(set(s.y[s.y < 10].tolist())) == list(range(10)) or kind == "drum"


def test_make_displays_matches_draw():
    x, y = make_displays(20, seed=3)
    s = draw_displays(20, seed=3)
    np.testing.assert_array_equal(x, s.x)
    np.testing.assert_array_equal(y, s.y)


def test_rolling_drums_are_drawn_and_labelled_by_the_dataset_rule():
    s = draw_displays(80, seed=2, kinds={"drum": 1.0})
    frac = s.value - np.floor(s.value)
    between = (frac > 0.2 + 1e-6) & (frac < 0.8 - 1e-6)
    assert 12 <= between.sum() <= 45  # about a third
    assert (s.y[between] == 10).all()
    assert (s.y[~between] < 10).all()


def test_drum_rule():
    assert [drum_label(v) for v in (0.0, 0.2, 0.25, 0.5, 0.75, 0.8, 9.85, 9.1)] == [0, 0, 10, 10, 10, 1, 0, 9]
    assert safe_answers(9.5) == (9, 0, 10)
    # a third digit is never safe; either neighbour or "not a digit" is
    assert rolling_safe(np.array([4, 5, 10, 6, 3]), np.full(5, 4.5)).tolist() == [True, True, True, False, False]


def test_seven_segment_tails_vary():
    rng = np.random.default_rng(0)
    sixes = {"".join(sorted(seven_segment(6, rng))) for _ in range(40)}
    sevens = {"".join(sorted(seven_segment(7, rng))) for _ in range(40)}
    assert sixes == {"acdefg", "cdefg"}
    assert sevens == {"abc", "abcf"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="n must be >= 0"):
        draw_displays(-1, seed=0)
    with pytest.raises(ValueError, match="kinds must be some of"):
        draw_displays(3, seed=0, kinds={"hologram": 1.0})


meter = pytest.mark.skipif(
    not (DEFAULT_DIR / "manifest.csv").is_file(),
    reason=f"meter-digits not found at {DEFAULT_DIR} (../shared/datasets/meter-digits beside the checkout)",
)


@meter
def test_meter_digits_loader(tmp_path):
    ev = load_meter_digits("eval", cache_dir=tmp_path)
    assert ev.split == "eval" and len(ev) == 3107
    assert ev.x.shape == (len(ev), 28, 28) and ev.x.dtype == np.uint8
    assert set(ev.y.tolist()) == set(range(11))
    # label N is class 10; a value within 0.2 of a digit is that digit (9.9 is 0)
    assert (ev.y[ev.rolling] == 10).all()
    frac = ev.value - np.floor(ev.value)
    whole = ev.y < 10
    near = np.minimum(frac, 1 - frac)[whole]
    assert near.max() <= 0.2 + 1e-4
    assert (ev.x.reshape(len(ev), -1).max(axis=1) > 0).mean() > 0.99
    # the cache gives the same arrays without the images
    assert len(list(tmp_path.glob("meterdigits_eval_*.npz"))) == 1
    again = load_meter_digits("eval", cache_dir=tmp_path)
    np.testing.assert_array_equal(again.x, ev.x)
    with open(DEFAULT_DIR / "manifest.csv", newline="") as f:
        train = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert not {r["path"] for r in train} & set(ev.path.tolist())  # an eval crop is never a training crop
    assert not {r["device"] for r in train} & set(ev.device.tolist())  # nor an eval meter


def test_meter_digits_bad_split_and_folder(tmp_path):
    from convert.errors import DataError

    with pytest.raises(DataError, match="split must be 'train' or 'eval'"):
        load_meter_digits("test", tmp_path)
    with pytest.raises(DataError, match="no manifest.csv here"):
        load_meter_digits("train", tmp_path)


def test_cli_options_reach_the_training_config():
    from convert.__main__ import _parser, _train_cfg

    cfg = _train_cfg(_parser().parse_args(["all", "--out", "x"]))
    assert cfg.meter_dir is None and cfg.displays_for(50_000) == 12_500  # meter-digits optional, displays on
    a = _parser().parse_args(
        ["all", "--out", "x", "--meter-digits", "/m", "--displays", "0", "--meter-repeat", "3", "--width", "1.25"]
    )
    cfg = _train_cfg(a)
    assert (cfg.meter_dir, cfg.displays_for(50_000), cfg.meter_repeat, cfg.width) == ("/m", 0, 3, 1.25)
    assert str(a.meter_digits) == "/m" and a.heldout_displays == 2000


def test_rolling_drums_train_as_the_nearer_digit_or_not_a_digit():
    from convert.train import rolling_labels

    y = np.array([3, 10, 10, 10, 10], np.uint8)
    value = np.array([3.0, 3.3, 3.5, 9.8, 10.0])
    assert rolling_labels(y, value, "nearest").tolist() == [3, 3, 4, 0, 10]  # a blank drum stays 10
    assert rolling_labels(y, value, "reject").tolist() == [3, 10, 10, 10, 10]
    assert rolling_labels(y, value, "near").tolist() == [3, 3, 10, 0, 10]  # the middle of a roll is 10
    with pytest.raises(ValueError, match="rolling_as must be"):
        rolling_labels(y, value, "guess")
