"""convert.edgetpu: pre-check without a compiler, and a fake edgetpu_compiler (full, partial, failure, missing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from convert.edgetpu import compile_model, find_compiler, parse_compiler_output, precheck
from convert.errors import CompilationError, CompilerNotFoundError

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "fixtures" / "fake_edgetpu_compiler"
SHIPPED = ROOT / "edge_infer" / "models" / "digits_int8.tflite"


@pytest.fixture()
def model(tmp_path) -> Path:
    p = tmp_path / "cpu" / "digits_int8.tflite"
    p.parent.mkdir()
    shutil.copyfile(SHIPPED, p)
    return p


@pytest.fixture()
def bin_dir(tmp_path) -> Path:
    """A directory holding only `edgetpu_compiler` (the fake), to put on PATH."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "edgetpu_compiler").symlink_to(FAKE)
    return d


def _cli(*args: str, path: str, mode: str = "full") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path, "FAKE_EDGETPU_MODE": mode, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "convert", "edgetpu", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _path_with(d: Path | None) -> str:
    # keep /usr/bin etc. (the fake's `#!/usr/bin/env python3`), drop any real compiler
    parts = [
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not (Path(p) / "edgetpu_compiler").exists()
    ]
    return os.pathsep.join(([str(d)] if d else []) + parts)


def test_precheck_shipped_model_maps_fully():
    r = precheck(SHIPPED)
    assert r.ok and r.split_at is None
    assert set(r.ops) <= {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}
    assert "should map to the Edge TPU" in r.summary()[0]


def test_precheck_finds_float_ops_and_split():
    tf = pytest.importorskip("tensorflow")
    import keras

    inp = keras.Input((28, 28, 1), batch_size=1)
    x = keras.layers.Conv2D(4, 3)(inp)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    conv = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inp, out))
    r = precheck(conv.convert())  # a float model: nothing maps
    assert not r.ok and r.split_at == 0
    assert any("float32" in msg for _, msg in r.problems)
    assert "split at op 0" in r.summary()[0]


def test_parse_partial_output():
    info = parse_compiler_output("""
Edge TPU Compiler version 15.0.340273435

Model compiled successfully in 273 ms.

Input model: model.tflite
Output model: model_edgetpu.tflite
On-chip memory used for caching model parameters: 1.30MiB
On-chip memory remaining for caching model parameters: 6.89MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 25
Operation log: model_edgetpu.log

Number of operations that will run on Edge TPU: 23
Number of operations that will run on CPU: 2

Operator                       Count      Status

RESHAPE                        2          Mapped to Edge TPU
CONV_2D                        21         Mapped to Edge TPU
SOFTMAX                        1          Operation is otherwise supported, but not mapped due to some unspecified limitation
FULLY_CONNECTED                1          More than one subgraph is not supported
""")
    assert (info["version"], info["subgraphs"], info["total_ops"]) == ("15.0.340273435", 1, 25)
    assert (info["ops_on_tpu"], info["ops_on_cpu"]) == (23, 2)
    assert info["on_chip_memory"] == "1.30MiB" and info["off_chip_memory"] == "0.00B"
    assert info["operators"][2] == (
        "SOFTMAX",
        1,
        "Operation is otherwise supported, but not mapped due to some unspecified limitation",
    )


def test_compile_full_mapping(model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "full")
    res = compile_model(model, compiler=FAKE, min_runtime_version=13)
    assert res.compiled_model == model.parent / "digits_int8_edgetpu.tflite" and res.compiled_model.is_file()
    assert res.log_file is not None and res.log_file.is_file()
    assert res.fully_mapped and res.ops_on_tpu == res.total_ops == 12 and res.ops_on_cpu == 0
    assert res.compiler_version == "16.0.384591198" and res.on_chip_memory.endswith("KiB")
    assert sorted(p.name for p in model.parent.iterdir()) == [
        "digits_int8.tflite",
        "digits_int8_edgetpu.log",
        "digits_int8_edgetpu.tflite",
    ]
    # edge_infer's "auto" finds the twin; with no TPU here it must fall back to the CPU model
    from edge_infer import load_model

    with load_model(model) as m:
        assert m.delegate == "cpu" and m.path == model


def test_compile_partial_mapping(model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "partial")
    out = tmp_path / "tpu"
    res = compile_model(model, out_dir=out, compiler=FAKE)
    assert not res.fully_mapped and res.ops_on_cpu == 2 and res.ops_on_tpu == 10
    assert (out / "digits_int8_edgetpu.tflite").is_file()
    statuses = {op: status for op, _, status in res.operators}
    assert statuses["SOFTMAX"] == "More than one subgraph is not supported"
    assert res.as_dict()["fully_mapped"] is False


def test_compile_failure_carries_output(model, monkeypatch):
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "fail")
    with pytest.raises(CompilationError, match=r"edgetpu_compiler failed on digits_int8.tflite") as e:
        compile_model(model, compiler=FAKE)
    assert "Internal compiler error" in e.value.output and e.value.returncode == 1
    assert sorted(p.name for p in model.parent.iterdir()) == ["digits_int8.tflite"]  # nothing half-written


def test_missing_compiler_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerNotFoundError, match=r"edgetpu_compiler.*edgetpu-compiler.*x86-64 Linux.*Docker"):
        find_compiler()


def test_cli_full(model, bin_dir):
    r = _cli(str(model), path=_path_with(bin_dir))
    assert r.returncode == 0, r.stderr
    assert "all ops mapped" in r.stdout and (model.parent / "digits_int8_edgetpu.tflite").is_file()
    assert "Traceback" not in r.stderr


def test_cli_partial(model, bin_dir, tmp_path):
    r = _cli(
        str(model),
        "--out-dir",
        str(tmp_path / "o"),
        "--min-runtime-version",
        "14",
        path=_path_with(bin_dir),
        mode="partial",
    )
    assert r.returncode == 0, r.stderr
    assert "2 op(s) left on the CPU" in r.stdout
    assert (tmp_path / "o" / "edgetpu.json").is_file()


def test_cli_failure_exit_1_with_compiler_output(model, bin_dir):
    r = _cli(str(model), path=_path_with(bin_dir), mode="fail")
    assert r.returncode == 1
    assert r.stderr.startswith("error: edgetpu_compiler failed")
    assert "Internal compiler error" in r.stderr and "Traceback" not in r.stderr


def test_cli_missing_compiler_exit_2_one_line(model):
    r = _cli(str(model), path=_path_with(None))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "edgetpu_compiler" in lines[0] and "edgetpu-compiler" in lines[0] and "x86-64 Linux" in lines[0]
