"""Request bodies -> arrays, for the HTTP service: pure functions, no Flask.

Sizes are read from PNG/JPEG headers before anything is decoded, so a small
file that claims a huge image (a decompression bomb) is refused cheaply.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from ...errors import ClientError
from ...image.io import decode_image

__all__ = ["DEFAULT_MAX_PIXELS", "MAX_JSON_SIDE", "ClientError", "decode_upload", "image_size", "parse_json_image"]

DEFAULT_MAX_PIXELS = 40_000_000
MAX_JSON_SIDE = 1024


def image_size(data: bytes) -> tuple[str, int, int]:
    """Reads the format and ``(width, height)`` from a PNG or JPEG header without decoding.

    Raises:
        ClientError: 415 for another image format, 400 for bytes that are no image
            or a header that is cut short.

    >>> image_size(b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I4sII", 13, b"IHDR", 640, 480) + bytes(5))
    ('png', 640, 480)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ClientError(400, "damaged PNG: no IHDR chunk at the start")
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                raise ClientError(400, f"damaged JPEG: no marker at byte {pos}")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if pos + 9 > len(data):
                    break
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return "jpeg", w, h
            if marker == 0xDA or length < 2:  # image data before any frame header
                break
            pos += 2 + length
        raise ClientError(400, "damaged JPEG: no frame header (SOF) found")
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            raise ClientError(415, f"{name} images are not supported; send PNG or JPEG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise ClientError(415, "WebP images are not supported; send PNG or JPEG")
    raise ClientError(400, "the body is not a PNG or JPEG image")


def decode_upload(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 grayscale or BGR array, with the pixel count checked first.

    Decoded as image files are (:func:`edge_infer.image.io.decode_image`): JPEGs
    upright by their EXIF orientation, transparent PNGs laid on paper, 16-bit to 8.

    Raises:
        ClientError: 400 undecodable, 413 more than ``max_pixels`` pixels, 415 not PNG/JPEG.
    """
    if not data:
        raise ClientError(400, "the body is empty; send a PNG or JPEG image")
    kind, w, h = image_size(data)
    if w == 0 or h == 0:
        raise ClientError(400, f"the {kind.upper()} header says {w}x{h} pixels")
    if w * h > max_pixels:
        raise ClientError(413, f"image is {w}x{h} ({w * h / 1e6:.1f} MP), over the {max_pixels / 1e6:g} MP limit")
    try:
        return decode_image(data)
    except ValueError:
        raise ClientError(400, f"the {kind.upper()} image could not be decoded (damaged or truncated)") from None


def parse_json_image(body: bytes) -> np.ndarray:
    """``{"image": [[...]]}`` -> uint8 (h, w) image.

    Values are pixel intensities 0-255, or 0.0-1.0 when none is above 1. A 28x28 array
    is taken as an MNIST digit, either polarity; other sizes (up to 1024 a side) as a
    crop of one digit.

    Raises:
        ClientError: 400 with what is wrong.

    >>> parse_json_image(b'{"image": [[0, 1], [1, 0.5]]}').tolist()
    [[0, 255], [255, 128]]
    """

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a pixel value")

    try:
        obj = json.loads(body, parse_constant=no_constants)
    except RecursionError:
        raise ClientError(400, "JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ClientError(400, f"bad JSON: {e}") from None
    if not isinstance(obj, dict) or "image" not in obj:
        raise ClientError(400, 'JSON must be an object {"image": [[...], ...]}')
    rows = obj["image"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise ClientError(400, '"image" must be a non-empty 2-D array (a list of rows)')
    h, w = len(rows), len(rows[0])
    if w == 0 or any(len(r) != w for r in rows):
        raise ClientError(400, '"image" rows must all have the same, non-zero length')
    if h > MAX_JSON_SIDE or w > MAX_JSON_SIDE:
        raise ClientError(400, f'"image" is {h}x{w}; at most {MAX_JSON_SIDE}x{MAX_JSON_SIDE} (28x28 is usual)')
    if any(type(v) not in (int, float) for r in rows for v in r):
        raise ClientError(400, '"image" values must be numbers (0-255, or 0.0-1.0)')
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except OverflowError:
        raise ClientError(400, '"image" has a value out of range; use 0-255 or 0.0-1.0') from None
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise ClientError(400, '"image" values must be finite and within 0-255 (or 0.0-1.0)')
    if arr.max() <= 1.0:
        arr = arr * 255.0
    img = np.rint(arr).astype(np.uint8)
    if img.shape == (28, 28):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        if border.mean() > 127:  # dark ink on light: MNIST is light on dark
            img = 255 - img
    return img


# -- the app ----------------------------------------------------------------
