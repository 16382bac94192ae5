"""Reading and writing images with whatever is installed.

OpenCV (the ``[camera]`` extra) or Pillow read anything; with neither, a small
built-in decoder reads PNG (8-bit, non-interlaced) and binary PGM/PPM, so that
``edge-infer classify digit.png`` works on a bare ``pip install edge-infer``.

Whichever decodes, the image comes out as it is meant to be seen: a JPEG is
turned upright by its EXIF orientation (a phone held upright stores its photo
sideways and says so in a tag), and transparency is laid on paper by
:func:`edge_infer.image.preprocess.flatten_alpha`.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from .preprocess import flatten_alpha, optional_module

__all__ = ["decode_image", "read_image"]

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_MAX_PIXELS = 50_000_000


def _paeth_row(cur: np.ndarray, prev: np.ndarray, bpp: int) -> None:
    c = cur.astype(np.int16)
    p = prev.astype(np.int16)
    for i in range(len(c)):
        a = int(c[i - bpp]) if i >= bpp else 0
        b = int(p[i])
        cc = int(p[i - bpp]) if i >= bpp else 0
        est = a + b - cc
        pa, pb, pc = abs(est - a), abs(est - b), abs(est - cc)
        pred = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
        c[i] = (c[i] + pred) & 0xFF
    cur[:] = c.astype(np.uint8)


def _decode_png(data: bytes) -> np.ndarray:
    pos, width, height, depth, ctype, interlace = 8, 0, 0, 0, 0, 0
    idat, palette = [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if not width or not height or ctype not in _PNG_CHANNELS:
        raise ValueError("damaged PNG (no valid IHDR chunk)")
    if depth != 8 or interlace:
        raise ValueError(
            f"PNG with bit depth {depth}{' and interlacing' if interlace else ''} needs OpenCV or "
            "Pillow: pip install 'edge-infer[camera]'"
        )
    if width * height > _MAX_PIXELS:
        raise ValueError(f"PNG is {width}x{height}, over the {_MAX_PIXELS} pixel limit")
    ch = _PNG_CHANNELS[ctype]
    stride = width * ch
    try:  # inflate no more than the header declares (and one byte to tell a bomb)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), height * (stride + 1) + 1)
    except zlib.error as e:
        raise ValueError(f"damaged PNG image data ({e})") from e
    if len(raw) > height * (stride + 1):
        raise ValueError(f"damaged PNG: image data inflates beyond the size its {width}x{height} header declares")
    if len(raw) < height * (stride + 1):
        raise ValueError("damaged PNG: image data is shorter than its size says")
    rows = np.frombuffer(raw, np.uint8)[: height * (stride + 1)].reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        f, cur = rows[y, 0], rows[y, 1:].copy()
        if f == 1:
            for c in range(ch):  # running sum per channel, wrapping at 256
                cur[c::ch] = np.cumsum(cur[c::ch], dtype=np.uint8)
        elif f == 2:
            cur = (cur.astype(np.uint16) + prev).astype(np.uint8)
        elif f == 3:
            c16 = cur.astype(np.int32)
            for i in range(stride):
                left = int(c16[i - ch]) if i >= ch else 0
                c16[i] = (c16[i] + ((left + int(prev[i])) >> 1)) & 0xFF
            cur = c16.astype(np.uint8)
        elif f == 4:
            _paeth_row(cur, prev, ch)
        elif f != 0:
            raise ValueError(f"damaged PNG: unknown row filter {f}")
        out[y] = cur
        prev = cur
    img = out.reshape(height, width, ch)
    if ctype == 3:
        if palette is None:
            raise ValueError("damaged PNG: palette image without a palette")
        img = palette[np.minimum(img[:, :, 0], len(palette) - 1)]
        ch = 3
        img = img[:, :, ::-1]  # RGB -> BGR
    elif ch == 3:
        img = img[:, :, ::-1]
    elif ch == 4:
        img = img[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img)


def _decode_pnm(data: bytes) -> np.ndarray:
    parts: list[bytes] = []
    pos = 2
    while len(parts) < 3:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        parts.append(data[start:pos])
    w, h, maxval = (int(p) for p in parts)
    ch = 3 if data[:2] == b"P6" else 1
    if maxval > 255:
        raise ValueError("16-bit PGM/PPM needs OpenCV or Pillow")
    body = np.frombuffer(data, np.uint8, count=w * h * ch, offset=pos + 1)
    img = body.reshape(h, w, ch)
    return np.ascontiguousarray(img[:, :, ::-1] if ch == 3 else img[:, :, 0])


def decode_image(data: bytes, *, reduce: int = 1) -> np.ndarray:
    """Decodes image bytes to a uint8 array: (h, w) grayscale or (h, w, 3) BGR, upright
    and opaque (see the module docstring).

    Args:
        data: The file's bytes.
        reduce: 1, 2, 4 or 8: a JPEG is decoded at that fraction of its size (by the JPEG
            decoder itself, so the full-size image is never in memory; BGR then). Other
            formats ignore it.

    Raises:
        ValueError: The bytes are not an image this machine can decode (the message says
            what to install for other formats), or ``reduce`` is not 1, 2, 4 or 8.
    """
    if not data:
        raise ValueError("image is empty (0 bytes)")
    if reduce not in (1, 2, 4, 8):
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")
    jpeg = data.startswith(b"\xff\xd8")
    cv2 = optional_module("cv2")
    if cv2 is not None:
        # IMREAD_UNCHANGED keeps alpha but ignores EXIF orientation; a JPEG has no
        # alpha, so it is read with a flag that applies the orientation (and keeps gray gray)
        if jpeg:
            flags = {1: cv2.IMREAD_ANYCOLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}.get(
                reduce, cv2.IMREAD_REDUCED_COLOR_8
            )
        elif data[:8] == _PNG_SIG and data[24:25] == b"\x10" and data[25:26] in (b"\x00", b"\x02"):
            # 16-bit without alpha: libpng strips to 8 bits row by row (half the memory)
            flags = cv2.IMREAD_GRAYSCALE if data[25] == 0 else cv2.IMREAD_COLOR
        else:
            flags = cv2.IMREAD_UNCHANGED
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
        except cv2.error as e:  # some damaged files raise rather than give None
            raise ValueError(f"not a decodable image ({str(e).strip().splitlines()[-1]})") from None
        if img is None:
            raise ValueError("not a decodable image (OpenCV could not read it); send a PNG or JPEG")
        if img.dtype == np.uint16:  # the high byte, as one 8-bit copy (no 16-bit temporary)
            img = np.ascontiguousarray(img.view(np.uint8)[..., 1 if sys.byteorder == "little" else 0 :: 2])
        elif img.dtype != np.uint8:
            img = img.astype(np.uint8)
        return flatten_alpha(img)
    if data.startswith(_PNG_SIG):
        try:
            return flatten_alpha(_decode_png(data))
        except (struct.error, IndexError) as e:
            raise ValueError(f"damaged PNG ({e})") from e
    if data[:2] in (b"P5", b"P6"):
        try:
            return _decode_pnm(data)
        except (ValueError, IndexError) as e:
            raise ValueError(f"damaged PGM/PPM ({e})") from e
    if optional_module("PIL") is not None:
        import io

        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as opened:
                if jpeg and reduce > 1:  # the JPEG decoder's own scaling (DCT scaling)
                    opened.draft("RGB", (opened.width // reduce, opened.height // reduce))
                upright = ImageOps.exif_transpose(opened)
                see_through = "A" in upright.mode or "transparency" in upright.info
                if upright.mode not in ("L", "RGB"):
                    upright = upright.convert("RGBA" if see_through else "RGB")
                arr = np.asarray(upright)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"not a decodable image ({e})") from e
        if arr.ndim == 3:
            arr = arr[:, :, [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[:, :, ::-1]
        return flatten_alpha(np.ascontiguousarray(arr))
    raise ValueError(
        "only PNG and PGM/PPM can be read without OpenCV or Pillow; "
        "pip install 'edge-infer[camera]' for JPEG and other formats"
    )


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads an image file (see :func:`decode_image`).

    Raises:
        FileNotFoundError: No such file.
        IsADirectoryError: The path is a directory.
        ValueError: Not a decodable image.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"image file {p} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory; pass image files")
    try:
        return decode_image(p.read_bytes())
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from e
