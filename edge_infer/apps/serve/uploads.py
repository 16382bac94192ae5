"""Request bodies -> arrays, for the HTTP service: pure functions, no Flask.

Sizes are read from PNG/JPEG headers before anything is decoded, so a small
file that claims a huge image (a decompression bomb) is refused cheaply, and a
large JPEG photo is read reduced (see :mod:`edge_infer.apps.serve.imagecheck`).
"""

from __future__ import annotations

import json
import struct  # noqa: F401  (the doctest builds a header with it)
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import ClientError
from ...image.io import decode_image
from .imagecheck import check_png_data, read_header

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODED_BYTES",
    "DEFAULT_MAX_PIXELS",
    "MAX_JSON_SIDE",
    "ClientError",
    "Upload",
    "decode_upload",
    "image_size",
    "parse_json_image",
    "read_upload",
]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024  # a request body
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_DECODED_BYTES = 16 * 1024 * 1024  # 5.6 MP of BGR; x workers bounds the decodes' memory
MAX_JSON_SIDE = 1024


def image_size(data: bytes) -> tuple[str, int, int]:
    """Reads the format and ``(width, height)`` from a PNG or JPEG header without decoding
    (see :func:`edge_infer.apps.serve.imagecheck.read_header` for the rest of the header).

    Raises:
        ClientError: 415 for another image format, 400 for bytes that are no image
            or a header that is cut short.

    >>> image_size(b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 640, 480, 8, 0, 0, 0, 0))
    ('png', 640, 480)
    """
    h = read_header(data)
    return h.kind, h.width, h.height


@dataclass(frozen=True)
class Upload:
    """A decoded upload: ``image`` read at ``1/reduce`` of the ``width`` x ``height`` stored."""

    image: np.ndarray
    width: int
    height: int
    reduce: int = 1


def read_upload(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
) -> Upload:
    """PNG/JPEG bytes -> a uint8 grayscale or BGR array, with every limit checked before decoding.

    The header gives the pixel count and the memory a decode takes (width x height x
    channels x bytes per sample, see :class:`~edge_infer.apps.serve.imagecheck.ImageHeader`).
    A JPEG over ``max_decoded_bytes`` is decoded at 1/2, 1/4 or 1/8 of its size by the JPEG
    decoder itself (the smallest reduction that fits); a PNG over it is refused. A PNG's
    image data is inflated once, bounded, to refuse one that inflates beyond its size.
    Decoded as image files are (:func:`edge_infer.image.io.decode_image`): JPEGs upright by
    their EXIF orientation, transparent PNGs laid on paper, 16-bit to 8.

    Raises:
        ClientError: 400 undecodable or a bomb (see :mod:`~edge_infer.apps.serve.imagecheck`),
            413 more than ``max_pixels`` pixels or too large to decode within
            ``max_decoded_bytes``, 415 not PNG/JPEG.
    """
    if not data:
        raise ClientError(400, "the body is empty; send a PNG or JPEG image")
    head = read_header(data)
    kind, w, h = head.kind.upper(), head.width, head.height
    if w == 0 or h == 0:
        raise ClientError(400, f"the {kind} header says {w}x{h} pixels")
    if head.pixels > max_pixels:
        raise ClientError(413, f"image is {w}x{h} ({head.pixels / 1e6:.1f} MP), over the {max_pixels / 1e6:g} MP limit")
    reduce = 1
    if head.decoded_bytes() > max_decoded_bytes:
        fits = [f for f in (2, 4, 8) if head.decoded_bytes(f) <= max_decoded_bytes] if head.kind == "jpeg" else []
        if not fits:
            need = head.decoded_bytes(8 if head.kind == "jpeg" else 1)
            raise ClientError(
                413,
                f"a {w}x{h} {kind} ({head.channels} channels x {8 * head.bytes_per_sample} bits"
                f"{', progressive' if head.work_bytes else ''}) needs {need / 2**20:.0f} MB to decode, over the "
                f"{max_decoded_bytes / 2**20:g} MB decoded-size limit; send a smaller image",
            )
        reduce = fits[0]
    if head.kind == "png":
        check_png_data(data, head)
    try:
        img = decode_image(data, reduce=reduce)
    except ValueError:
        raise ClientError(400, f"the {kind} image could not be decoded (damaged or truncated)") from None
    return Upload(img, w, h, reduce)


def decode_upload(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
) -> np.ndarray:
    """:func:`read_upload`'s image alone (possibly reduced; see there).

    Raises:
        ClientError: 400 undecodable, 413 over a limit, 415 not PNG/JPEG.
    """
    return read_upload(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes).image


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
