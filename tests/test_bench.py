"""`python -m bench --quick` runs end to end and writes every section (no timing asserts)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"classify", "batch", "models", "detect", "startup"}
TARGETS = {"classify", "batch12_vs_raw", "batch12_vs_classify", "detect", "startup", "startup_rss", "detect_fast"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--json",
            str(out / "bench.json"),
            "--plot",
            str(out / "bench.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return r, out


@pytest.mark.slow
def test_quick_bench_writes_every_section(quick_run):
    r, out = quick_run
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((out / "bench.json").read_text())
    assert set(result["sections"]) == SECTIONS
    for name, sec in result["sections"].items():
        assert sec.get("rows") or sec.get("skipped"), name
        for row in sec.get("rows", []):
            assert row["value"] >= 0 and row["unit"], (name, row)
            if "baseline_key" in row:
                assert row["ratio"] > 0 and row["q1"] <= row["ratio"] <= row["q3"], (name, row)
    detect = {row["key"] for row in result["sections"]["detect"].get("rows", [])}
    assert not detect or {"detect-baseline", "detect", "detect-baseline-fast", "detect-fast"} <= detect
    models = {row["key"] for row in result["sections"]["models"]["rows"]}
    assert {"float|xnnpack|1|1", "float|xnnpack|1|12"} <= models  # a checkout has the float timing twin
    batch = {row["key"] for row in result["sections"]["batch"]["rows"]}
    assert {f"raw@{n}" for n in (1, 4, 12, 32)} | {f"batch@{n}" for n in (1, 4, 12, 32)} <= batch
    assert {t["target"] for t in result["targets"]} == TARGETS
    assert result["meta"]["quick"] is True and result["meta"]["backend"]
    assert (out / "bench.png").stat().st_size > 1000


@pytest.mark.slow
def test_quick_bench_prints_the_tables(quick_run):
    r, _ = quick_run
    assert "== classify" in r.stdout and "== targets" in r.stdout
    assert "[bench]" in r.stdout  # progress for people


def test_bench_imports_nothing_heavy():
    code = (
        "import bench.suite, sys; print(sorted(m for m in ('cv2', 'tensorflow', 'ai_edge_litert') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_section_is_a_usage_error():
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nonsense"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2 and "unknown section" in r.stderr


def test_float_timing_twin_is_used_only_with_the_int8_models_graph():
    from types import SimpleNamespace

    from bench.suite import BUNDLED_FLOAT, _bundled_float
    from edge_infer.runtime.backend import get_backend
    from edge_infer.runtime.model import shipped_model_path

    shipped = shipped_model_path()
    ctx = SimpleNamespace(backend=get_backend(), content=shipped.read_bytes(), model_path=shipped)
    path, why = _bundled_float(ctx)
    assert path == BUNDLED_FLOAT and "same graph" in why
    other = ROOT / "tests" / "fixtures" / "digits10_int8.tflite"  # 10 classes: another output shape
    ctx = SimpleNamespace(backend=get_backend(), content=other.read_bytes(), model_path=other)
    path, why = _bundled_float(ctx)
    assert path is None and "another graph than digits10_int8.tflite" in why and "--float-model" in why


def test_machine_info_names_the_cpu_features_that_pick_the_kernels():
    from bench.kit import SIMD_FEATURES, machine_info

    info = machine_info()
    assert set(info["simd"]) <= set(SIMD_FEATURES)
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    listed = {
        f
        for line in cpuinfo.read_text().splitlines()
        if line.split(":")[0].strip() in ("flags", "Features")
        for f in line.split(":", 1)[1].split()
    }
    assert info["simd"] == [f for f in SIMD_FEATURES if f in listed]


def test_startup_compiles_the_measured_package_as_pip_does(tmp_path):
    import importlib.util

    from bench.startup import compile_package

    pkg = tmp_path / "startup_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("VALUE = 41 + 1\n")
    cached = Path(importlib.util.cache_from_source(str(pkg / "__init__.py")))
    assert not cached.exists()
    note = compile_package(pkg)
    assert "compiled before timing" in note and cached.is_file()
    # a child that may not write bytecode (PYTHONDONTWRITEBYTECODE) still reads it
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tmp_path)}
    code = "import startup_probe as p; print(p.VALUE, p.__cached__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["42", str(cached)]
