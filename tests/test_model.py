from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest

from edge_infer import EdgeInferError, ModelError, load_model, read_manifest, shipped_model_path
from edge_infer.runtime.model import ModelNotFoundError


@pytest.fixture(scope="module")
def model():
    with load_model() as m:
        yield m


def test_shipped_model_is_int8_in_and_out(model):
    assert model.input.dtype == np.int8 and model.output.dtype == np.int8
    assert model.input.shape == (1, 28, 28, 1) and model.output.shape == (1, 11)  # 0-9 and "not a digit"
    assert model.input.quantized and model.input.scale > 0
    assert model.delegate == "cpu" and model.backend == "ai_edge_litert"
    assert model.path == shipped_model_path()


def test_manifest_matches_file():
    man = read_manifest()
    assert man["sha256"] == hashlib.sha256(shipped_model_path().read_bytes()).hexdigest()
    assert man["labels"] == [str(i) for i in range(10)] + ["not a digit"] and man["reject_class"] == 10
    assert man["input"]["dtype"] == "int8"
    assert 0.9 < man["accuracy"]["int8"] <= 1.0
    assert "python -m convert" in man["command"]


def test_float_and_raw_input_agree(model, mnist_test):
    x, _ = mnist_test
    f = x[:8, :, :, None].astype(np.float32) / 255.0
    raw = model.input.quantize(f)
    assert np.array_equal(model.run(f), model.run(raw))
    assert model.run(f[0]).shape == (1, 11)  # a missing batch dimension is added


def test_output_is_dequantised_probabilities(model, mnist_test):
    x, y = mnist_test
    out = model.run(x[:50, :, :, None].astype(np.float32) / 255.0)
    assert out.dtype == np.float32 and out.shape == (50, 11)
    assert np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=0.05)
    assert (out.argmax(1) == y[:50]).mean() >= 0.95


def test_batch_resize_equals_one_at_a_time(model, mnist_test):
    x, _ = mnist_test
    raw = model.input.quantize(x[:12, :, :, None].astype(np.float32) / 255.0)
    batched = model.invoke(raw)
    singles = np.concatenate([model.invoke(raw[i : i + 1]) for i in range(12)])
    assert model.batch_resizable is True
    assert np.array_equal(batched, singles)


def test_invoke_filled_writes_the_input_tensor_in_place(mnist_test):
    x, _ = mnist_test
    with load_model() as m:
        raw = m.input.quantize(x[:7, :, :, None].astype(np.float32) / 255.0)
        seen = []

        def fill(view):
            seen.append((view.shape, view.dtype, view.flags.writeable))
            view[...] = raw

        expected = m.invoke(raw).copy()
        assert np.array_equal(m.invoke_filled(7, fill), expected)
        assert seen == [((7, 28, 28, 1), np.int8, True)]
        with pytest.raises(EdgeInferError, match="reference to internal data"):  # a view kept: refused, clearly
            m.invoke_filled(7, lambda view: seen.append(view))
        seen.clear()
        assert np.array_equal(m.invoke(raw), expected)  # usable again once the view is gone
        m._resizable = False  # as a fixed-batch model (an Edge TPU's)
        assert m.invoke_filled(3, fill) is None and len(seen) == 0  # nothing run: the caller falls back


def test_xnnpack_off_gives_the_same_answers(mnist_test):
    x, _ = mnist_test
    f = x[:32, :, :, None].astype(np.float32) / 255.0
    with load_model(delegate="cpu") as a, load_model(delegate="cpu:noxnnpack") as b:
        assert b.delegate == "cpu:noxnnpack"
        assert (a.run(f).argmax(1) == b.run(f).argmax(1)).mean() >= 0.97


def test_close_is_idempotent_and_closed_model_refuses():
    m = load_model(num_threads=1)
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(Exception, match="closed"):
        m.run(np.zeros((28, 28, 1), np.float32))


def test_context_manager_closes():
    with load_model() as m:
        assert not m.closed
    assert m.closed


# --- bad models --------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope.tflite")
    assert issubclass(ModelNotFoundError, FileNotFoundError)


def test_directory(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        load_model(p)


def test_non_model_file(tmp_path):
    p = tmp_path / "notes.tflite"
    p.write_text("this is not a model\n" * 10)
    with pytest.raises(ModelError, match="not a TFLite model"):
        load_model(p)


def test_truncated_model_without_manifest(tmp_path):
    p = tmp_path / "cut.tflite"
    p.write_bytes(shipped_model_path().read_bytes()[:3000])
    with pytest.raises(ModelError, match="could not be loaded"):
        load_model(p)


def test_damaged_model_with_manifest_fails_sha256(tmp_path):
    src = shipped_model_path()
    dst = tmp_path / src.name
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    dst.write_bytes(bytes(data))
    shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
    with pytest.raises(ModelError, match="damaged: its sha256"):
        load_model(dst)


def test_verify_false_skips_the_manifest(tmp_path):
    src = shipped_model_path()
    dst = tmp_path / src.name
    shutil.copy(src, dst)
    man = json.loads(src.with_suffix(".json").read_text())
    man["sha256"] = "0" * 64
    dst.with_suffix(".json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match="sha256"):
        load_model(dst)
    with load_model(dst, verify=False) as m:
        assert m.input.dtype == np.int8


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"num_threads": 0}, ValueError, "num_threads must be >= 1"),
        ({"num_threads": -2}, ValueError, "num_threads must be >= 1"),
        ({"num_threads": "4"}, TypeError, "num_threads must be an int"),
        ({"num_threads": True}, TypeError, "num_threads must be an int"),
        ({"delegate": "tpu"}, ValueError, "unknown delegate 'tpu'"),
        ({"delegate": 3}, TypeError, "delegate must be a string"),
        ({"delegate": "edgetpu:usb:x"}, ValueError, "bad Edge TPU device"),
        ({"delegate_options": {"a": 1}}, ValueError, "delegate_options were given"),
        ({"verify": "yes"}, TypeError, "verify must be True or False"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load_model(**kwargs)


@pytest.mark.parametrize("path", [123, b"model.tflite", ""])
def test_bad_path_types(path):
    with pytest.raises((TypeError, ModelError), match="model"):
        load_model(path)


@pytest.mark.parametrize(
    ("x", "exc", "match"),
    [
        ([[0.0] * 28] * 28, TypeError, "numpy array"),
        (np.zeros((0, 28, 28, 1), np.float32), ValueError, "N >= 1"),
        (np.zeros((28, 28), np.float32), ValueError, "shape"),
        (np.full((1, 28, 28, 1), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((1, 28, 28, 1), np.uint16), TypeError, "neither float"),
    ],
)
def test_bad_inputs_to_run(model, x, exc, match):
    with pytest.raises(exc, match=match):
        model.run(x)


def test_non_contiguous_and_read_only_inputs_work(model, mnist_test):
    x, _ = mnist_test
    f = np.asfortranarray(x[:4, :, :, None].astype(np.float32) / 255.0)
    ro = f.copy()
    ro.flags.writeable = False
    assert np.array_equal(model.run(f), model.run(ro))
    assert np.array_equal(model.run(f[::2]), model.run(np.ascontiguousarray(f[::2])))
