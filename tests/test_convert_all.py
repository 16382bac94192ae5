"""The whole stage end to end on a small slice, through the real CLI, then the result in edge_infer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _convert(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVERT_OFFLINE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "edgetpu_compiler").exists()
    )
    return subprocess.run(
        [sys.executable, "-m", "convert", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("convert_all")
    r = _convert(
        "all", "--out", str(out / "run"), "--epochs", "1", "--limit", "5000", "--saved-model", str(out / "saved_model")
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / "run", out, r


@pytest.mark.slow
def test_all_writes_every_artifact(run):
    out, parent, r = run
    names = {p.name for p in out.iterdir()}
    assert {
        "digits.keras",
        "train.json",
        "digits_float.tflite",
        "digits_int8.tflite",
        "digits_int8.json",
        "baseline_int8.tflite",
        "edgetpu.json",
        "report",
    } <= names
    assert not [n for n in names if n.startswith(".tmp-")]
    assert {"report.md", "report.json", "confusion_int8.png", "misclassified_int8.png"} <= {
        p.name for p in (out / "report").iterdir()
    }
    assert (parent / "saved_model" / "saved_model.pb").is_file()
    assert "[convert] training on 5000 images" in r.stdout and "[convert] wrote" in r.stdout
    assert "skipping Edge TPU compilation: edgetpu_compiler not found" in r.stdout  # no compiler: not an error


@pytest.mark.slow
def test_all_output_is_fully_int8_and_scores_in_edge_infer(run, mnist):
    from convert.negatives import heldout_negatives
    from convert.quantize import verify_fully_integer
    from edge_infer import load_model

    out, _, r = run
    model = out / "digits_int8.tflite"
    check = verify_fully_integer(model)
    assert check.input_dtype == check.output_dtype == "int8"
    assert check.output_shape == (1, 11)  # digits 0-9, then "not a digit"
    # one printed digit per 6 MNIST digits, one negative per 7 digits of either kind
    assert "5000 images + 833 printed digits + 833 'not a digit' negatives" in r.stdout

    with load_model(model, delegate="cpu") as m:  # sha256 from the manifest is checked on load
        probs = m.run(mnist.x_test[:, :, :, None] / 255.0)
        assert probs.shape == (10_000, 11) and m.batch_resizable
        neg = m.run(heldout_negatives(400, seed=31)[..., None] / 255.0).argmax(axis=1)
    preds = probs.argmax(axis=1)  # strict: a digit called "not a digit" is an error
    acc = float((preds == mnist.y_test).mean())
    assert acc >= 0.93, acc
    rejected_digits = float((preds == 10).mean())
    rejected_negatives = float((neg == 10).mean())
    # after one epoch on a slice, well above the 1-in-8 prior of the class, and digits mostly kept
    assert rejected_negatives >= 0.5 and rejected_digits <= 0.03, (rejected_negatives, rejected_digits)

    manifest = json.loads((out / "digits_int8.json").read_text())
    assert manifest["file"] == "digits_int8.tflite" and manifest["size_bytes"] == model.stat().st_size
    assert manifest["labels"] == [str(i) for i in range(10)] + ["not a digit"]
    assert manifest["reject_class"] == 10
    assert manifest["input"]["shape"] == [1, 28, 28, 1] and manifest["input"]["zero_point"] == -128
    assert manifest["output"]["kind"] == "softmax" and manifest["output"]["shape"] == [1, 11]
    assert manifest["ops"] == check.op_names
    assert manifest["accuracy"]["int8"] == pytest.approx(acc)
    assert manifest["accuracy"]["int8_digits_rejected"] == pytest.approx(rejected_digits)
    assert manifest["accuracy"]["int8_negatives_rejected"] >= 0.5
    assert manifest["command"].startswith("python -m convert all --out ") and manifest["seed"] == 1234
    assert manifest["accuracy"]["heldout_printed"].startswith("2000 printed digits, DejaVu")

    report = json.loads((out / "report" / "report.json").read_text())
    assert report["accuracy"]["int8_edge_infer"] == pytest.approx(acc)
    assert report["not_a_digit"]["int8_edge_infer"]["heldout_negatives"] == 2000
    cm = np.array(report["confusion_int8"])
    assert cm.shape == (11, 11) and cm[:10].sum() == 10_000 and cm[10].sum() == 2000
    assert report["targets_met"]["batch_resize_consistent"] is True
    assert set(report["latency_us_per_digit"]) >= {"float_keras", "float_tflite", "int8_tflite", "baseline_int8"}
    md = (out / "report" / "report.md").read_text()
    assert "## Not a digit (class 10)" in md and "held-out non-digit" in md
    assert "## Printed digits (held out)" in md and (out / "report" / "heldout_printed.png").is_file()


@pytest.mark.slow
def test_all_learns_printed_digits(run):
    """Printed digits in DejaVu (a font family training never saw) are read, not rejected."""
    from convert.printed import heldout_printed
    from edge_infer import load_model

    out, _, _ = run
    x, y = heldout_printed(500, seed=41)
    with load_model(out / "digits_int8.tflite", delegate="cpu") as m:
        pred = m.run(x[..., None] / 255.0).argmax(axis=1)
    acc, rejected = float((pred == y).mean()), float((pred == 10).mean())
    # chance is 1 in 11; after one epoch on a slice it reads most of them and rejects almost none
    assert acc >= 0.85 and rejected <= 0.05, (acc, rejected)
    report = json.loads((out / "report" / "report.json").read_text())
    scored = report["printed_digits"]["int8_edge_infer"]
    assert scored["heldout_printed"] == 2000 and len(scored["per_digit"]) == 10
    assert scored["strict_accuracy"] >= 0.85 and scored["rejected"] <= 0.05
    manifest = json.loads((out / "digits_int8.json").read_text())["accuracy"]
    assert manifest["printed_int8"] == pytest.approx(scored["strict_accuracy"])
    assert manifest["printed_int8_rejected"] == pytest.approx(scored["rejected"])
    assert manifest["printed_float"] >= 0.85


def test_reject_class_options():
    from convert.__main__ import _parser, _train_cfg

    cfg = _train_cfg(_parser().parse_args(["all", "--out", "x"]))
    assert cfg.reject_class and cfg.classes == 11 and cfg.negatives_for(50_000) == 7142
    cfg = _train_cfg(_parser().parse_args(["train", "--out", "x", "--negatives", "300", "--fonts", "/f"]))
    assert cfg.negatives_for(5000) == 300 and cfg.fonts == ("/f",)
    cfg = _train_cfg(_parser().parse_args(["all", "--out", "x", "--no-reject-class"]))
    assert cfg.classes == 10 and cfg.negatives_for(50_000) == 0


def test_printed_options():
    from convert.__main__ import _parser, _train_cfg

    a = _parser().parse_args(["all", "--out", "x"])
    assert _train_cfg(a).printed_for(50_000) == 8333 and a.heldout_printed == 2000  # on by default
    cfg = _train_cfg(_parser().parse_args(["train", "--out", "x", "--printed", "0"]))
    assert cfg.printed_for(50_000) == 0 and cfg.negatives_for(50_000) == 7142  # 0 turns them off
    cfg = _train_cfg(_parser().parse_args(["all", "--out", "x", "--printed", "500"]))
    assert cfg.printed_for(5000) == 500 and cfg.negatives_for(5500) == 785
    with pytest.raises(SystemExit):
        _parser().parse_args(["all", "--out", "x", "--printed", "-1"])


def test_manifest_labels_follow_the_output(tmp_path):
    pytest.importorskip("tensorflow")
    from convert.errors import ConvertError
    from convert.pipeline import write_manifest
    from convert.quantize import inspect_model

    shipped = ROOT / "edge_infer" / "models" / "digits_int8.tflite"
    check = inspect_model(shipped)
    model = tmp_path / "m.tflite"
    model.write_bytes(shipped.read_bytes())
    for classes, labels in ((10, [str(i) for i in range(10)]), (11, [str(i) for i in range(10)] + ["not a digit"])):
        c = replace(check, output_shape=(1, classes))
        m = json.loads(write_manifest(model, c, accuracy=None, macs=None, seed=None).read_text())
        assert m["labels"] == labels and (m.get("reject_class") == 10) == (classes == 11)
    with pytest.raises(ConvertError, match="12 output classes"):
        write_manifest(model, replace(check, output_shape=(1, 12)), accuracy=None, macs=None, seed=None)


def test_bad_usage_exits_2_with_one_line(tmp_path):
    r = _convert("all", "--out", str(tmp_path), "--epochs", "0")
    assert r.returncode == 2 and "expected a number >= 1" in r.stderr
    r = _convert("train", "--out", str(tmp_path), "--data", str(tmp_path / "nope.npz"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: --data {tmp_path / 'nope.npz'}: no such file or directory"]
    r = _convert("quantize", "--out", str(tmp_path / "empty"))
    assert r.returncode == 1 and "no trained model here" in r.stderr and "Traceback" not in r.stderr
