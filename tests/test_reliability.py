"""Damaged models, many threads, bad inputs: typed errors, right answers, no crashes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from bench.fuzz_models import run_fuzz
from edge_infer import DigitRecognizer

from .conftest import paper_digit


def test_fuzz_100_damaged_shipped_models_are_all_refused():
    res = run_fuzz(100, seed=11, manifest=True)
    assert res["outcomes"]["typed"] == 100, res


def test_fuzz_100_damaged_models_without_manifest_never_crash_or_hang():
    # Without a manifest nothing can tell damaged weights from real ones, so some
    # damaged copies load (counted, not failed); none may crash, hang or raise an
    # untyped error.
    res = run_fuzz(100, seed=12, manifest=False)
    o = res["outcomes"]
    assert o["crash"] == 0 and o["hang"] == 0 and o["untyped"] == 0, res
    assert o["typed"] >= 50  # truncations, foreign and random files are always refused


@pytest.mark.parametrize("workers", [1, 3])
def test_8_threads_x_500_classifications_match_single_threaded(mnist_test, workers):
    x, _ = mnist_test
    rng = np.random.default_rng(5)
    # a mix of MNIST digits and photo-like crops, so preprocessing runs in threads too
    crops = [x[i] if i % 2 else paper_digit(x[i], scale=3, rng=rng) for i in range(100)]
    with DigitRecognizer() as ref:
        expected = [(p.digit, p.score) for p in (ref.classify(c) for c in crops)]
    errors: list[str] = []
    with DigitRecognizer(workers=workers) as rec:

        def work(t: int) -> None:
            for k in range(500):
                i = (k * 7 + t) % len(crops)
                p = rec.classify(crops[i])
                if (p.digit, p.score) != expected[i]:
                    errors.append(f"thread {t} call {k}: {p} != {expected[i]}")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_batches_from_threads_match(mnist_test):
    x, _ = mnist_test
    with DigitRecognizer() as rec:
        expected = [p.digit for p in rec.classify_batch(x[:64])]
        out: dict[int, list[int]] = {}

        def work(t: int) -> None:
            n = 1 + t * 9  # different batch sizes force resizes from several threads
            out[t] = [p.digit for p in rec.classify_batch(x[:n])]

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert all(out[t] == expected[: 1 + t * 9] for t in range(8))
