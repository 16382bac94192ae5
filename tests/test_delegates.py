"""Delegates: specs, the real external-delegate path (a C library built here), Edge TPU plans.

No Edge TPU exists on these machines. The Edge TPU paths are exercised with the
same external-delegate mechanism libedgetpu uses (``load_delegate`` on a shared
library); EDGE_INFER_EDGETPU_LIBRARY points the runtime at the fake library,
which answers like libedgetpu with and without a device.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edge_infer import DelegateUnavailableError, available_delegates, load_model, shipped_model_path
from edge_infer.runtime.delegates import parse_delegate


@pytest.mark.parametrize(
    ("spec", "kind", "device"),
    [
        ("auto", "auto", None),
        ("CPU", "cpu", None),
        ("cpu:noxnnpack", "cpu:noxnnpack", None),
        ("edgetpu", "edgetpu", None),
        ("edgetpu:usb", "edgetpu", "usb"),
        ("edgetpu:usb:0", "edgetpu", "usb:0"),
        ("edgetpu:pci:0", "edgetpu", "pci:0"),
        ("gpu", "gpu", None),
    ],
)
def test_parse_specs(spec, kind, device):
    s = parse_delegate(spec)
    assert (s.kind, s.device) == (kind, device)


def test_parse_library_paths():
    assert parse_delegate("/opt/lib/libfoo.so").kind == "external"
    assert parse_delegate("libedgetpu.so.1").library == "libedgetpu.so.1"


def _digits(mnist_test, n=16):
    x, _ = mnist_test
    return x[:n, :, :, None].astype(np.float32) / 255.0


def test_external_delegate_receives_options_and_matches_cpu(fake_delegate_lib, tmp_path, mnist_test):
    record = tmp_path / "options.txt"
    opts = {"record_to": str(record), "cache_size": 64, "verbose": True}
    with load_model(delegate=str(fake_delegate_lib), delegate_options=opts) as m:
        assert m.delegate == str(fake_delegate_lib)
        got = m.run(_digits(mnist_test))
    lines = set(record.read_text().splitlines())
    assert lines == {f"record_to={record}", "cache_size=64", "verbose=true"}
    with load_model(delegate="cpu") as cpu:
        assert np.array_equal(got, cpu.run(_digits(mnist_test)))


def test_external_delegate_refusal_is_typed(fake_delegate_lib):
    with pytest.raises(DelegateUnavailableError, match="refused to create a delegate.*fail=1"):
        load_model(delegate=str(fake_delegate_lib), delegate_options={"fail": 1})


def test_external_delegate_missing_file(tmp_path):
    with pytest.raises(DelegateUnavailableError, match="does not exist"):
        load_model(delegate=str(tmp_path / "libnothing.so"))


def test_external_delegate_not_a_library(tmp_path):
    bogus = tmp_path / "libbogus.so"
    bogus.write_text("not an ELF file")
    with pytest.raises(DelegateUnavailableError, match="could not be loaded"):
        load_model(delegate=str(bogus))


def test_bad_delegate_options(fake_delegate_lib):
    with pytest.raises(TypeError, match="delegate_options must be a dict"):
        load_model(delegate=str(fake_delegate_lib), delegate_options=["a"])
    with pytest.raises(TypeError, match="must be a string, number or bool"):
        load_model(delegate=str(fake_delegate_lib), delegate_options={"a": [1]})


def test_explicit_edgetpu_without_runtime_gives_the_fix(monkeypatch):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", "libedgetpu-not-installed.so.1")
    with pytest.raises(DelegateUnavailableError, match="libedgetpu1-std.*plugdev"):
        load_model(delegate="edgetpu")


def test_explicit_edgetpu_without_device(monkeypatch, fake_delegate_lib):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", str(fake_delegate_lib))
    monkeypatch.setenv("FAKE_DELEGATE_NO_DEVICE", "1")
    with pytest.raises(
        DelegateUnavailableError, match=r"no Edge TPU answered at device 'usb:0'.*Failed to open device"
    ):
        load_model(delegate="edgetpu:usb:0")


def test_explicit_edgetpu_passes_the_device(monkeypatch, fake_delegate_lib, tmp_path):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", str(fake_delegate_lib))
    record = tmp_path / "opts.txt"
    with load_model(delegate="edgetpu:pci:0", delegate_options={"record_to": str(record)}) as m:
        assert m.delegate == "edgetpu"
    assert "device=pci:0" in record.read_text().splitlines()


@pytest.fixture
def twin_dir(tmp_path):
    """A CPU model with an ``_edgetpu`` twin beside it (the twin here is a copy: no compiler)."""
    src = shipped_model_path()
    shutil.copy(src, tmp_path / "digits.tflite")
    shutil.copy(src, tmp_path / "digits_edgetpu.tflite")
    return tmp_path


def test_auto_chooses_edgetpu_twin_when_a_tpu_answers(monkeypatch, fake_delegate_lib, twin_dir, caplog):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", str(fake_delegate_lib))
    with caplog.at_level(logging.INFO, logger="edge_infer"):
        with load_model(twin_dir / "digits.tflite") as m:
            assert m.delegate == "edgetpu"
            assert m.path.name == "digits_edgetpu.tflite"
    assert "chose Edge TPU" in caplog.text


def test_auto_falls_back_to_cpu_and_says_why(monkeypatch, fake_delegate_lib, twin_dir, caplog):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", str(fake_delegate_lib))
    monkeypatch.setenv("FAKE_DELEGATE_NO_DEVICE", "1")
    with caplog.at_level(logging.INFO, logger="edge_infer"):
        with load_model(twin_dir / "digits.tflite") as m:
            assert m.delegate == "cpu"
            assert m.path.name == "digits.tflite"
    # a compiled twin with no TPU answering is worth a WARNING: an unplugged Coral, a 3x slowdown
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "digits_edgetpu.tflite is compiled for the Edge TPU but no TPU answered" in warned[0]
    assert "no Edge TPU answered" in caplog.text


def test_auto_compiled_model_without_twin_or_tpu_fails_at_load(monkeypatch, fake_delegate_lib, tmp_path):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", str(fake_delegate_lib))
    monkeypatch.setenv("FAKE_DELEGATE_NO_DEVICE", "1")
    alone = tmp_path / "digits_edgetpu.tflite"
    shutil.copy(shipped_model_path(), alone)
    with pytest.raises(DelegateUnavailableError, match="compiled for the Edge TPU, no uncompiled twin"):
        load_model(alone)


def test_auto_compiled_model_picks_cpu_twin(monkeypatch, fake_delegate_lib, twin_dir):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", "libedgetpu-not-installed.so.1")
    with load_model(twin_dir / "digits_edgetpu.tflite") as m:
        assert m.delegate == "cpu" and m.path.name == "digits.tflite"


def test_failed_delegate_leaves_no_noise_on_stderr(fake_delegate_lib):
    code = (
        "import gc, edge_infer\n"
        f"for spec in ('edgetpu', 'gpu', {str(fake_delegate_lib)!r}):\n"
        "    try: edge_infer.load_model(delegate=spec, delegate_options={'fail': 1} if spec.endswith('.so') else None)\n"
        "    except edge_infer.DelegateUnavailableError: pass\n"
        "gc.collect()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"EDGE_INFER_EDGETPU_LIBRARY": "libedgetpu-missing.so.1", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert "Exception ignored" not in r.stderr and "Traceback" not in r.stderr


def test_available_delegates_reports_each_with_a_reason(monkeypatch):
    monkeypatch.setenv("EDGE_INFER_EDGETPU_LIBRARY", "libedgetpu-not-installed.so.1")
    st = {s.name: s for s in available_delegates()}
    assert st["cpu"].available and "XNNPACK" in st["cpu"].detail
    assert not st["edgetpu"].available and "libedgetpu1-std" in st["edgetpu"].detail
    assert not st["gpu"].available and "EDGE_INFER_GPU_DELEGATE" in st["gpu"].detail
