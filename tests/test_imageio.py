from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from edge_infer.image import io as imageio
from edge_infer.image.io import _decode_png, decode_image, read_image
from edge_infer.image.preprocess import flatten_alpha, optional_module

from .conftest import traced_peak, with_exif_orientation

# Which decoder reads: OpenCV (the [camera] extra), Pillow, or the built-in PNG reader.
DECODERS = {"opencv": (), "pillow": ("cv2",), "builtin": ("cv2", "PIL")}


@pytest.fixture(params=list(DECODERS))
def decoder(request, monkeypatch):
    hidden = DECODERS[request.param]
    monkeypatch.setattr(imageio, "optional_module", lambda name: None if name in hidden else optional_module(name))
    return request.param


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
    ref = np.asarray(Image.open(io.BytesIO(data)).convert(mode if mode in ("L", "LA", "RGBA") else "RGB"))
    if ref.ndim == 3 and ref.shape[2] != 2:  # RGB(A) -> BGR(A); gray + alpha stays
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


# orientation tag -> how the stored pixels must be turned to be upright
_TURNS = {1: None, 3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}


@pytest.mark.parametrize("decoder", ["opencv", "pillow"], indirect=True)  # the built-in one reads no JPEG
@pytest.mark.parametrize("orientation", sorted(_TURNS))
def test_jpeg_is_turned_upright_by_its_exif_orientation(decoder, orientation):
    upright = np.full((60, 90), 230, np.uint8)
    upright[5:25, 5:45] = 20  # a dark block in the top-left corner: any turn moves it
    undo = {
        cv2.ROTATE_90_CLOCKWISE: cv2.ROTATE_90_COUNTERCLOCKWISE,
        cv2.ROTATE_90_COUNTERCLOCKWISE: cv2.ROTATE_90_CLOCKWISE,
    }
    turn = _TURNS[orientation]
    stored = upright if turn is None else cv2.rotate(upright, undo.get(turn, turn))
    jpeg = with_exif_orientation(cv2.imencode(".jpg", stored)[1].tobytes(), orientation)
    got = decode_image(jpeg)
    gray = got if got.ndim == 2 else cv2.cvtColor(got, cv2.COLOR_BGR2GRAY)
    assert gray.shape == upright.shape
    assert np.abs(gray.astype(int) - upright).mean() < 4


@pytest.mark.parametrize("ink", [0, 255])
def test_transparent_png_is_laid_on_paper_that_shows_its_ink(decoder, ink):
    """Ink drawn on a transparent page, the hidden colour everywhere the ink's own:
    dark ink comes out on white, light ink on black, from every decoder."""
    alpha = np.zeros((40, 40), np.uint8)
    alpha[10:30, 18:22] = 255  # a stroke
    alpha[10:30, 17] = alpha[10:30, 22] = 128  # anti-aliased edges
    bgra = np.zeros((40, 40, 4), np.uint8)
    bgra[:, :, :3] = ink
    bgra[:, :, 3] = alpha
    got = decode_image(cv2.imencode(".png", bgra)[1].tobytes())
    assert got.ndim == 3 and got.shape[2] == 3
    paper = 255 - ink
    assert (got[0, 0] == paper).all() and (got[20, 20] == ink).all()
    assert abs(int(got[20, 17, 0]) - 128) <= 1  # half-covered edge: half way


def test_flatten_alpha_keeps_dtype_and_gray():
    ga = np.zeros((4, 4, 2), np.uint16)
    ga[1:3, 1:3] = 65535  # white, opaque, on a clear page: light content goes on black
    out = flatten_alpha(ga)
    assert out.dtype == np.uint16 and out.shape == (4, 4)
    assert out[0, 0] == 0 and out[1, 1] == 65535
    f = np.zeros((3, 3, 4), np.float32)
    f[1, 1] = (0.1, 0.1, 0.1, 1.0)  # dark ink, alpha 0-1
    out = flatten_alpha(f)
    assert out.dtype == np.float32 and out.shape == (3, 3, 3)
    assert np.allclose(out[0, 0], 1.0) and np.allclose(out[1, 1], 0.1)
    opaque = np.dstack([np.full((2, 2, 3), 7, np.uint8), np.full((2, 2), 255, np.uint8)])
    assert np.array_equal(flatten_alpha(opaque), opaque[:, :, :3])
    bgr = np.zeros((2, 2, 3), np.uint8)
    assert flatten_alpha(bgr) is bgr
    bgrx = np.dstack([np.full((2, 2, 3), 9, np.uint8), np.zeros((2, 2), np.uint8)])  # padding, not clear
    assert np.array_equal(flatten_alpha(bgrx), bgrx[:, :, :3])


def test_flatten_alpha_works_in_bands():
    """A 12 MP transparent upload: the float work is done a band of rows at a time
    (whole, it would be about 300 MB of float32 on a Pi serving uploads)."""
    img = np.zeros((3000, 4000, 4), np.uint8)
    img[1000:2000, 1000:1100, 3] = 255  # a black bar on a clear page
    out, peak = traced_peak(flatten_alpha, img)
    assert peak < out.nbytes + 32 * 2**20, f"peak {peak / 2**20:.0f} MB for a {out.nbytes / 2**20:.0f} MB result"
    assert (out[0, 0] == 255).all() and (out[1500, 1050] == 0).all()


def test_16_bit_png_keeps_its_high_byte():
    ramp = (np.arange(1024, dtype=np.uint16).reshape(16, 64) * 64).astype(np.uint16)
    got = decode_image(cv2.imencode(".png", ramp)[1].tobytes())
    assert got.dtype == np.uint8 and np.array_equal(got, (ramp >> 8).astype(np.uint8))
