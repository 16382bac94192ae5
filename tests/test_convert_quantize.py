"""convert.quantize: full-integer conversion, the strict verifier, batch resizing of the exported graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.errors import NotFullyIntegerError
from convert.quantize import inspect_model, verify_fully_integer

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "edge_infer" / "models" / "digits_int8.tflite"

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def small_model():
    import keras

    from convert.train import build_model

    keras.utils.set_random_seed(0)
    return build_model(width=0.25)


@pytest.fixture(scope="module")
def calib(mnist):
    return mnist.x_train[:32]


def test_shipped_model_is_fully_integer():
    check = verify_fully_integer(SHIPPED)
    assert check.input_dtype == "int8" and check.output_dtype == "int8"
    # 10 digit classes, or 11 once the shipped model has the "not a digit" class
    assert check.input_shape == (1, 28, 28, 1) and check.output_shape in ((1, 10), (1, 11))
    assert abs(check.input_scale - 1 / 255) < 1e-6 and check.input_zero_point == -128
    assert check.output_scale == pytest.approx(1 / 256) and check.output_zero_point == -128
    assert not {"SHAPE", "STRIDED_SLICE", "PACK", "RESHAPE", "DEQUANTIZE", "QUANTIZE"} & set(check.op_names)


def test_verifier_refuses_float_model(small_model):
    from convert.quantize import to_float_tflite

    with pytest.raises(NotFullyIntegerError, match=r"not fully integer: .*float32") as e:
        verify_fully_integer(to_float_tflite(small_model))
    assert any("computes in float32" in p for p in e.value.problems)


def test_verifier_refuses_dynamic_range_model(small_model):
    """Weights int8 but activations float: the classic half-quantised model."""
    from convert.quantize import _converter

    conv = _converter(small_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative dataset: dynamic range only
    half = conv.convert()
    check = inspect_model(half)
    assert any(t == "int8" for op in check.ops for t in op.inputs), "weights should be int8"
    with pytest.raises(NotFullyIntegerError, match="float32"):
        verify_fully_integer(half)


def test_full_integer_int8_and_uint8_io(small_model, calib):
    from convert.quantize import to_int8_tflite

    c8 = verify_fully_integer(to_int8_tflite(small_model, calib))
    assert (c8.input_dtype, c8.output_dtype) == ("int8", "int8")
    cu = verify_fully_integer(to_int8_tflite(small_model, calib, io="uint8"))
    assert (cu.input_dtype, cu.output_dtype) == ("uint8", "uint8") and cu.input_zero_point == 0


@pytest.mark.parametrize("classes", [10, 11, 12])
def test_verifier_checks_the_class_count(classes, calib):
    """10 digit scores, or 11 with "not a digit"; anything else is not a digit model."""
    import keras

    from convert.quantize import to_int8_tflite
    from convert.train import build_model

    keras.utils.set_random_seed(0)
    q = to_int8_tflite(build_model(width=0.25, classes=classes), calib)
    if classes == 12:
        with pytest.raises(NotFullyIntegerError, match="12 class scores, expected 10"):
            verify_fully_integer(q)
    else:
        assert verify_fully_integer(q).output_shape == (1, classes)


def test_verify_cli_lists_ops_and_refuses(small_model, tmp_path):
    from convert.quantize import to_float_tflite

    f = tmp_path / "float.tflite"
    f.write_bytes(to_float_tflite(small_model))
    for path, code in ((SHIPPED, 0), (f, 1)):
        r = subprocess.run(
            [sys.executable, "-m", "convert", "verify", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == code, r.stderr
        assert "CONV_2D" in r.stdout and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and "not fully integer" in r.stderr


def test_batch_resize_matches_batch_one(mnist):
    """The runtime resizes the batch-1 graph to N crops: results must equal N single invokes."""
    from ai_edge_litert.interpreter import Interpreter

    x = mnist.x_test[:37]
    it = Interpreter(model_path=str(SHIPPED))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    q = np.clip(np.rint(x / 255.0 / scale) + zp, -128, 127).astype(np.int8)[..., None]
    it.allocate_tensors()
    single = []
    for i in range(len(q)):
        it.set_tensor(inp["index"], q[i : i + 1])
        it.invoke()
        single.append(it.get_tensor(out["index"]).copy())
    it.resize_tensor_input(inp["index"], [len(q), 28, 28, 1])
    it.allocate_tensors()
    it.set_tensor(inp["index"], q)
    it.invoke()
    batched = it.get_tensor(out["index"])
    assert batched.shape == (len(q), out["shape"][-1])
    np.testing.assert_array_equal(batched, np.concatenate(single))


def test_saved_model_export(small_model, tmp_path):
    from convert.quantize import export_saved_model

    export_saved_model(small_model, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    fn = loaded.signatures["serving_default"]
    y = fn(image=tf.zeros([3, 28, 28, 1]))["probs"].numpy()
    assert y.shape == (3, 11) and np.allclose(y.sum(axis=1), 1, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["sm"]


@pytest.fixture(scope="module")
def briefly_trained(mnist):
    """A small model trained for one short epoch: its answers depend on the pixels."""
    import keras

    from convert.train import build_model

    keras.utils.set_random_seed(1)
    model = build_model(width=0.25)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(mnist.x_train[:2048, :, :, None] / np.float32(255.0), mnist.y_train[:2048], batch_size=64, verbose=0)
    return model


@pytest.mark.parametrize("kind", ["float", "int8", "uint8"])
def test_recognizer_reads_float_int8_and_uint8_models_as_the_model_does(kind, briefly_trained, mnist, tmp_path):
    """DigitRecognizer's input look-up and output tables match Model.run on each input type."""
    from convert.quantize import to_float_tflite, to_int8_tflite
    from edge_infer import DigitRecognizer, load_model

    model = briefly_trained
    content = to_float_tflite(model) if kind == "float" else to_int8_tflite(model, mnist.x_train[:64], io=kind)
    path = tmp_path / f"{kind}.tflite"
    path.write_bytes(content)
    x = mnist.x_test[:12]
    with load_model(path, delegate="cpu") as m:
        expected = np.concatenate([m.run(im[None, :, :, None] / np.float32(255.0)) for im in x])
    with DigitRecognizer(path, delegate="cpu") as rec:
        batch = rec.classify_batch(x)
        single = [rec.classify(im) for im in x]
    assert batch == single
    np.testing.assert_array_equal(np.stack([p.scores for p in batch]), expected)
    assert [p.digit for p in batch] == list(np.argmax(expected[:, :10], axis=1))
    assert len({p.scores.tobytes() for p in batch}) >= 10, "the answers should depend on the pixels"
