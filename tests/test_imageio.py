from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edge_infer.imageio import _decode_png, decode_image, read_image


def _png(arr: np.ndarray, mode: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA"])
@pytest.mark.parametrize("optimize", [False, True])
def test_builtin_png_decoder_matches_pillow(mode, optimize):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    base[10:20] = np.linspace(0, 255, 53, dtype=np.uint8)[None, :, None]  # smooth rows: Sub/Up/Avg/Paeth
    data = _png(base, mode, optimize=optimize)
    ours = _decode_png(data)
    ref = np.asarray(
        Image.open(io.BytesIO(data)).convert({"L": "L", "LA": "L"}.get(mode, "RGBA" if mode == "RGBA" else "RGB"))
    )
    if ref.ndim == 3:
        ref = ref[:, :, [2, 1, 0, 3]] if ref.shape[2] == 4 else ref[:, :, ::-1]
    assert np.array_equal(ours, ref)


def test_decode_refuses_garbage():
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_image(b"hello, world" * 10)
    with pytest.raises(ValueError, match="empty"):
        decode_image(b"")


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "none.png")
    with pytest.raises(IsADirectoryError):
        read_image(tmp_path)
