from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from edge_infer import DigitRecognizer, ModelError, Prediction, read_manifest

from .conftest import paper_digit


def test_shipped_model_reproduces_manifest_accuracy_on_all_10000(rec, mnist_test):
    x, y = mnist_test
    preds = rec.classify_batch(x)
    right = np.array([p.digit for p in preds]) == y
    stated = read_manifest()["accuracy"]
    strict = float(np.mean(right & np.array([p.is_digit for p in preds])))  # "not a digit" is an error
    assert abs(strict - stated["int8"]) <= 0.0005, (strict, stated["int8"])
    assert abs(float(np.mean(right)) - stated["int8_digit_only"]) <= 0.0005
    rejected = float(np.mean([not p.is_digit for p in preds]))
    assert abs(rejected - stated["int8_digits_rejected"]) <= 0.0005


def test_classify_returns_a_prediction(rec, mnist_test):
    x, y = mnist_test
    p = rec.classify(x[0])
    assert isinstance(p, Prediction) and p.digit == y[0]
    assert p.scores.shape == (11,) and p.score == pytest.approx(float(p.scores[:10].max()))
    assert p.is_digit and p.reject_score == pytest.approx(float(p.scores[10])) and p.reject_score < 0.5
    assert not p.scores.flags.writeable


def test_prediction_is_read_only_comparable_and_picklable(rec, mnist_test):
    import pickle
    from dataclasses import FrozenInstanceError

    p = rec.classify(mnist_test[0][0])
    with pytest.raises(FrozenInstanceError, match="read-only"):
        p.digit = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        p.scores[0] = 1.0
    q = pickle.loads(pickle.dumps(p))
    assert q == p and hash(q) == hash(p) and np.array_equal(q.scores, p.scores)
    made = Prediction(p.digit, p.score, p.scores.tolist(), p.is_digit, p.reject_score)
    assert made == p and repr(made) == repr(p) and made.scores.dtype == np.float32
    assert Prediction(p.digit, p.score, np.zeros(11), p.is_digit, p.reject_score) == p  # scores are not compared
    assert Prediction((p.digit + 1) % 10, p.score, p.scores, p.is_digit, p.reject_score) != p
    assert f"digit={p.digit}" in repr(p) and "scores" not in repr(p)


@pytest.mark.parametrize("model", [None, "digits10"])
def test_predictions_from_ranked_bytes_equal_the_float_path(model):
    """Codec.predictions reads 8-bit outputs as ranks (max and index on bytes); the answers,
    ties included, equal argmax and dequantised floats, and the scores read back in full."""
    import pickle

    with DigitRecognizer(DIGITS10 if model else None) as r:
        assert r._codec.out_rank is not None
        c = r.model.output.shape[-1]
        rng = np.random.default_rng(3)
        raw = rng.integers(-128, 128, (400, c)).astype(r.model.output.dtype)
        raw[:100, 3] = raw[:100, 7] = 127  # ties for the best digit: the first wins, as argmax
        raw[100:150] = -128  # all equal
        if c == 11:
            raw[150:200, 10] = raw[150:200, :10].max(axis=1)  # "not a digit" tied with the best digit
        got = r._codec.predictions(raw, len(raw))
        values = r.model.output.dequantize(raw)
        for p, v in zip(got, values):
            assert p.digit == int(np.argmax(v[:10])) and p.score == pytest.approx(float(v[:10].max()), abs=0)
            assert p.reject_score == (float(v[10]) if c == 11 else 0.0)
            assert p.is_digit == (c == 10 or bool(v[10] <= v[:10].max()))
            assert np.array_equal(p.scores, v.astype(np.float32))
        assert pickle.loads(pickle.dumps(got[0])) == got[0]
        assert np.array_equal(pickle.loads(pickle.dumps(got[5])).scores, got[5].scores)


def test_classify_batch_equals_classify(rec, mnist_test):
    x, _ = mnist_test
    batch = rec.classify_batch(x[:12])
    single = [rec.classify(im) for im in x[:12]]
    assert [(p.digit, p.score) for p in batch] == [(p.digit, p.score) for p in single]
    assert rec.classify_batch([]) == []
    assert len(rec.classify_batch(list(x[:3]))) == 3


def test_photo_like_crops_are_read(rec, mnist_test):
    x, y = mnist_test
    rng = np.random.default_rng(7)
    crops = [paper_digit(x[i], scale=int(rng.integers(2, 6)), rng=rng) for i in range(200)]
    acc = np.mean([p.digit for p in rec.classify_batch(crops)] == y[:200])
    assert acc >= 0.95


def test_a_28x28_dark_digit_on_white_is_normalised_not_taken_as_mnist(rec, mnist_test):
    """A drawing program's 28x28 save is black on white: its light corners say it is not
    in MNIST's layout yet, so it is normalised like any crop (read as is, 3 in 10 were right)."""
    x, y = mnist_test
    digits, labels = x[:300], y[:300]
    inverted = 255 - digits
    assert np.mean([rec.classify(d).digit for d in inverted] == labels) >= 0.98
    mixed = digits.copy()
    mixed[::3] = inverted[::3]
    before = mixed.copy()
    got = rec.classify_batch(mixed)
    assert np.array_equal(mixed, before)  # the caller's batch is not written
    assert np.mean([p.digit for p in got] == labels) >= 0.98
    assert got[1::3] == rec.classify_batch(digits[1::3])  # MNIST-ready ones go in as they are


def test_top_k(rec, mnist_test):
    x, y = mnist_test
    top = rec.top_k(x[0], 3)
    assert len(top) == 3 and top[0][0] == y[0]
    assert top[0][1] >= top[1][1] >= top[2][1]
    with pytest.raises(ValueError, match="k must be an int from 1 to 10"):
        rec.top_k(x[0], 0)


def test_bad_batch_inputs(rec):
    with pytest.raises(TypeError, match="list of arrays"):
        rec.classify_batch("abc")
    with pytest.raises(ValueError, match="shape"):
        rec.classify_batch(np.zeros((4, 5), np.uint8))


def test_recognizer_refuses_a_non_digit_model():
    from dataclasses import replace

    from edge_infer import load_model

    m = load_model()
    m.input = replace(m.input, shape=(1, 32, 32, 3))  # as a colour 32x32 model would report
    with pytest.raises(ModelError, match="DigitRecognizer needs"):
        DigitRecognizer(m)
    assert not m.closed  # the caller loaded it and still owns it
    m.close()


def test_a_model_passed_in_stays_open_after_close():
    from edge_infer import load_model

    with load_model() as m:
        rec = DigitRecognizer(m)
        rec.close()
        assert not m.closed
        assert rec.classify(np.zeros((28, 28), np.uint8)).digit in range(10)  # still usable: not closed
    assert m.closed
    with DigitRecognizer() as own:
        pass
    assert own.model.closed  # one it loaded itself, it closes


def test_workers_share_the_load_and_agree(mnist_test):
    x, _ = mnist_test
    expected = [p.digit for p in DigitRecognizer().classify_batch(x[:200])]
    results: dict[int, list[int]] = {}
    with DigitRecognizer(workers=2) as rec:

        def work(t: int) -> None:
            results[t] = [rec.classify(x[i]).digit for i in range(200)]

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(r == expected for r in results.values())


def test_bad_workers():
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        DigitRecognizer(workers=0)


# -- digits-only (10-class) models ---------------------------------------------
DIGITS10 = Path(__file__).resolve().parent / "fixtures" / "digits10_int8.tflite"


def test_a_digits_only_model_is_served_without_a_reject_answer(mnist_test):
    """The model shipped before the "not a digit" class: every answer is a digit."""
    x, y = mnist_test
    with DigitRecognizer(DIGITS10) as r10:
        assert not r10.has_reject_class
        preds = r10.classify_batch(x[:500])
    assert all(p.is_digit and p.reject_score == 0.0 and p.scores.shape == (10,) for p in preds)
    assert np.mean([p.digit for p in preds] == y[:500]) >= 0.99


def test_an_eleventh_class_that_is_not_declared_last_is_refused():
    from dataclasses import replace

    from edge_infer import load_model

    m = load_model()
    m.output = replace(m.output, shape=(1, 12))
    with pytest.raises(ModelError, match="11 \\(0-9 and 'not a digit' last\\)"):
        DigitRecognizer(m)
