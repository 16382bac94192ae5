"""Fine-tuning on one meter's own crops (``python -m convert.finetune``): real TensorFlow, real LiteRT.

A few hundred crops of one meter from ``../shared/datasets/meter-digits`` (its ``train`` split only,
never ``eval``), filed by label as ``edge-infer meter label`` leaves them; a stratified share is held
back. The fine-tuned int8 model must read that meter's held-back crops better than the shipped one
and keep MNIST at 99.3% or more. Skipped (visibly) without the dataset or TensorFlow.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

DATASET = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "meter-digits"
METER = "watermeter/altair/alkr"  # 389 train crops: all ten digits and 245 drums between two digits

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (DATASET / "manifest.csv").is_file(), reason=f"meter-digits dataset not at {DATASET}"),
]


@pytest.fixture(scope="module")
def crops_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("crops")
    with open(DATASET / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train" and r["device"] == METER]
    assert 200 <= len(rows) <= 1000
    for r in rows:
        d = out / r["label"].lower()
        d.mkdir(exist_ok=True)
        os.symlink(DATASET / r["path"], d / Path(r["path"]).name)
    return out


def test_keras_rebuild_matches_the_int8_model(mnist_test):
    pytest.importorskip("tensorflow", reason="the [convert] extra is not installed")
    from convert.finetune import keras_from_tflite, score
    from edge_infer.runtime.modelfile import shipped_model_path

    x, y = mnist_test[0][:2000], mnist_test[1][:2000]
    model = keras_from_tflite(shipped_model_path())
    probs = model.predict((x.astype(np.float32) / 255.0)[..., None], verbose=0)
    rebuilt = float((probs.argmax(axis=1) == y).mean())
    assert abs(rebuilt - score(shipped_model_path(), x, y)) < 0.003


def test_finetune_raises_the_meters_accuracy_and_keeps_mnist(crops_dir, tmp_path):
    pytest.importorskip("tensorflow", reason="the [convert] extra is not installed")
    from convert.finetune import finetune
    from edge_infer import DigitRecognizer

    r = finetune(crops_dir, tmp_path / "out")  # the defaults: 4 epochs, 25,000 MNIST digits, crops x15
    print(
        f"\n{METER}: held-back crops ({r.heldout_crops}) {r.before:.2%} -> {r.after:.2%}; "
        f"MNIST {r.mnist_before:.2%} -> {r.mnist_after:.2%} (trained on {r.train_crops} crops)"
    )
    assert r.after > r.before + 0.05
    # it forgets nothing: MNIST within 0.2 points of the starting model (99.23% for the shipped one)
    assert r.mnist_after >= r.mnist_before - 0.002 and r.mnist_after >= 0.99
    manifest = json.loads((tmp_path / "out" / "digits_int8.json").read_text())
    assert manifest["reject_class"] == 10 and manifest["finetune"]["after"] == r.after
    with DigitRecognizer(r.model) as rec:  # the runtime takes it as it takes the shipped model
        assert rec.has_reject_class and rec.classify(np.zeros((28, 28), np.uint8)).score > 0
