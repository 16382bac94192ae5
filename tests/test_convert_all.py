"""The whole stage end to end on a small slice, through the real CLI, then the result in edge_infer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    from convert.quantize import verify_fully_integer
    from edge_infer import DigitRecognizer, load_model

    out, _, _ = run
    model = out / "digits_int8.tflite"
    check = verify_fully_integer(model)
    assert check.input_dtype == check.output_dtype == "int8"

    with DigitRecognizer(model=model, delegate="cpu") as rec:
        preds = np.array([p.digit for p in rec.classify_batch(mnist.x_test)])
    acc = float((preds == mnist.y_test).mean())
    assert acc >= 0.95, acc

    with load_model(model, delegate="cpu") as m:  # sha256 from the manifest is checked on load
        y = m.run(mnist.x_test[:5, :, :, None] / 255.0)
        assert y.shape == (5, 10) and m.batch_resizable

    manifest = json.loads((out / "digits_int8.json").read_text())
    assert manifest["file"] == "digits_int8.tflite" and manifest["size_bytes"] == model.stat().st_size
    assert manifest["labels"] == [str(i) for i in range(10)]
    assert manifest["input"]["shape"] == [1, 28, 28, 1] and manifest["input"]["zero_point"] == -128
    assert manifest["output"]["kind"] == "softmax" and manifest["ops"] == check.op_names
    assert manifest["accuracy"]["int8"] == pytest.approx(acc)
    assert manifest["command"].startswith("python -m convert all --out ") and manifest["seed"] == 1234

    report = json.loads((out / "report" / "report.json").read_text())
    assert report["accuracy"]["int8_edge_infer"] == pytest.approx(acc)
    assert report["targets_met"]["batch_resize_consistent"] is True
    assert set(report["latency_us_per_digit"]) >= {"float_keras", "float_tflite", "int8_tflite", "baseline_int8"}


def test_bad_usage_exits_2_with_one_line(tmp_path):
    r = _convert("all", "--out", str(tmp_path), "--epochs", "0")
    assert r.returncode == 2 and "expected a number >= 1" in r.stderr
    r = _convert("train", "--out", str(tmp_path), "--data", str(tmp_path / "nope.npz"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: --data {tmp_path / 'nope.npz'}: no such file or directory"]
    r = _convert("quantize", "--out", str(tmp_path / "empty"))
    assert r.returncode == 1 and "no trained model here" in r.stderr and "Traceback" not in r.stderr
