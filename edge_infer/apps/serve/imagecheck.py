"""PNG and JPEG headers read without decoding, and the bounded checks done before a decode.

What a decoder will allocate is known from the header: width x height x channels x
bytes per sample (:attr:`ImageHeader.decoded_bytes`), plus, for a progressive JPEG, a
coefficient buffer of the whole image whatever the output scale. The service refuses
(or, for a JPEG, reduces) an image before any decoder runs.

Two bombs are not in the header and are checked here in bounded time:

- PNG image data (IDAT) that inflates beyond what the header declares: inflated in
  64 KB pieces that are thrown away, and refused as soon as one byte more than the
  declared size comes out (libpng would inflate all of it, gigabytes if asked).
- JPEGs with absurd numbers of segments (a million tiny APP1s) or scans: the markers are
  walked here, with a regular expression across entropy-coded data, and refused after
  :data:`MAX_JPEG_SEGMENTS` segments or :data:`MAX_JPEG_SCANS` scans.

Pure functions, no Flask, no OpenCV; every refusal is a
:class:`edge_infer.errors.ClientError` with its HTTP status.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from ...errors import ClientError

__all__ = [
    "MAX_JPEG_SCANS",
    "MAX_JPEG_SEGMENTS",
    "MAX_PNG_CHUNKS",
    "ImageHeader",
    "check_png_data",
    "read_header",
]

MAX_JPEG_SEGMENTS = 1000  # a camera's JPEG has 10-30; an ICC profile split into 64 KB parts adds a few
MAX_JPEG_SCANS = 64  # a progressive JPEG has about 10; each scan is a pass over the whole image
MAX_PNG_CHUNKS = 10_000  # IDAT pieces of 8 KB each for an 80 MB file
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel in the file
_PNG_DECODED = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}  # ... and channels decoded (palette and gray+alpha: BGRA)
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_NO_LENGTH = frozenset((0x01, *range(0xD0, 0xDA)))  # TEM, RST0-7, SOI, EOI
_PROGRESSIVE = frozenset((0xC2, 0xC6, 0xCA, 0xCE))
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")  # in entropy data: not FF00 stuffing, RSTn or fill


@dataclass(frozen=True)
class ImageHeader:
    """What a PNG or JPEG header says, before any decoding.

    Attributes:
        kind: ``"png"`` or ``"jpeg"``.
        width, height: Pixels, as stored (before any EXIF rotation).
        channels: Channels of the decoded array (a palette PNG and gray + alpha decode to BGRA,
            a colour JPEG to BGR).
        bytes_per_sample: 1, or 2 for a 16-bit PNG with alpha (kept at 16 bits by the decoder;
            16-bit PNGs without alpha are reduced to 8 bits while they are read).
        work_bytes: Memory the decoder needs besides its output: a progressive JPEG's
            coefficient buffer (2 bytes per sample of every component, at full size).
        expected_data: A PNG's inflated image data size, as the header declares it.
    """

    kind: str
    width: int
    height: int
    channels: int
    bytes_per_sample: int = 1
    work_bytes: int = 0
    expected_data: int = 0

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def decoded_bytes(self, reduce: int = 1) -> int:
        """Bytes a decode allocates: the output at ``1/reduce`` scale (a JPEG only) plus ``work_bytes``.

        >>> ImageHeader("jpeg", 4000, 3000, 3).decoded_bytes(2)
        9000000
        """
        w, h = -(-self.width // reduce), -(-self.height // reduce)
        return w * h * self.channels * self.bytes_per_sample + self.work_bytes


def read_header(data: bytes) -> ImageHeader:
    """Reads a PNG or JPEG header (a JPEG's markers up to its frame header) without decoding.

    Raises:
        ClientError: 415 for another image format; 400 for bytes that are no image, a damaged
            or cut-short header, or a JPEG with over :data:`MAX_JPEG_SEGMENTS` segments before
            its frame header.

    >>> read_header(b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I4sIIBBBBB", 13, b"IHDR", 640, 480, 8, 2, 0, 0, 0))
    ImageHeader(kind='png', width=640, height=480, channels=3, bytes_per_sample=1, work_bytes=0, expected_data=922080)
    """
    if data.startswith(_PNG_SIG):
        return _png_header(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_header(data)
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            raise ClientError(415, f"{name} images are not supported; send PNG or JPEG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise ClientError(415, "WebP images are not supported; send PNG or JPEG")
    raise ClientError(400, "the body is not a PNG or JPEG image")


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 29 or data[12:16] != b"IHDR":
        raise ClientError(400, "damaged PNG: no IHDR chunk at the start")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if ctype not in _PNG_DEPTHS or depth not in _PNG_DEPTHS[ctype] or interlace > 1:
        raise ClientError(400, f"damaged PNG: colour type {ctype} with bit depth {depth} is not valid")
    samples = _PNG_SAMPLES[ctype]

    def raw(cols: int, rows: int) -> int:  # filter byte + packed samples, per row
        return rows * (1 + (cols * samples * depth + 7) // 8) if cols and rows else 0

    if interlace:
        expected = sum(
            raw((w - x0 + dx - 1) // dx if w > x0 else 0, (h - y0 + dy - 1) // dy if h > y0 else 0)
            for x0, y0, dx, dy in _ADAM7
        )
    else:
        expected = raw(w, h)
    bps = 2 if depth == 16 and ctype in (4, 6) else 1
    return ImageHeader("png", w, h, _PNG_DECODED[ctype], bps, expected_data=expected)


def _jpeg_header(data: bytes) -> ImageHeader:
    pos, segments = 2, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ClientError(400, f"damaged JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ClientError(400, f"JPEG has over {MAX_JPEG_SEGMENTS} segments before its frame header; refused")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            return _jpeg_frame(data, pos, marker)
        if marker == 0xDA or length < 2:  # image data before any frame header
            break
        pos += 2 + length
    raise ClientError(400, "damaged JPEG: no frame header (SOF) found")


def _jpeg_frame(data: bytes, pos: int, marker: int) -> ImageHeader:
    if pos + 10 > len(data):
        raise ClientError(400, "damaged JPEG: the frame header is cut short")
    h, w, ncomp = struct.unpack(">HHB", data[pos + 5 : pos + 10])
    comps = data[pos + 10 : pos + 10 + 3 * ncomp]
    if ncomp not in (1, 3, 4) or len(comps) < 3 * ncomp:
        raise ClientError(400, f"damaged JPEG: {ncomp} colour components")
    factors = [(comps[3 * i + 1] >> 4, comps[3 * i + 1] & 15) for i in range(ncomp)]
    if not all(1 <= fh <= 4 and 1 <= fv <= 4 for fh, fv in factors):
        raise ClientError(400, "damaged JPEG: bad sampling factors in the frame header")
    work = 0
    if marker in _PROGRESSIVE:  # all coefficients are kept until the last scan: 2 bytes a sample
        hmax, vmax = max(f[0] for f in factors), max(f[1] for f in factors)
        for fh, fv in factors:
            blocks_w = -(-w * fh // (8 * hmax))
            blocks_h = -(-h * fv // (8 * vmax))
            work += blocks_w * blocks_h * 64 * 2
    _count_scans(data, pos)
    return ImageHeader("jpeg", w, h, 1 if ncomp == 1 else 3, 1, work_bytes=work)


def _count_scans(data: bytes, pos: int) -> None:
    """Walks the segments after the frame header (a regex skips entropy-coded data); bounded."""
    segments = scans = 0
    end = len(data)
    while pos + 4 <= end:
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image
            return
        if marker in _NO_LENGTH or marker == 0xFF:
            m = _NEXT_MARKER.search(data, pos + 1)
            if m is None:
                return
            pos = m.start()
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise ClientError(400, f"JPEG has over {MAX_JPEG_SEGMENTS} segments; refused")
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + max(2, length)
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ClientError(400, f"JPEG has over {MAX_JPEG_SCANS} scans; refused")
            m = _NEXT_MARKER.search(data, pos)
            if m is None:
                return
            pos = m.start()
        elif pos < end and data[pos] != 0xFF:  # garbage between segments: let the decoder judge
            m = _NEXT_MARKER.search(data, pos)
            if m is None:
                return
            pos = m.start()


def check_png_data(data: bytes, header: ImageHeader) -> None:
    """Inflates a PNG's image data (thrown away in 64 KB pieces) and refuses it when it grows
    past the size its header declares; the time taken is bounded by that size.

    Raises:
        ClientError: 400 for damaged compressed data, an IDAT that inflates beyond the
            declared size, or over :data:`MAX_PNG_CHUNKS` chunks.
    """
    pos, chunks = 8, 0
    inflater = zlib.decompressobj()
    produced, limit = 0, header.expected_data
    end = len(data)
    view = memoryview(data)
    while pos + 8 <= end:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise ClientError(400, f"PNG has over {MAX_PNG_CHUNKS} chunks; refused")
        length, kind = struct.unpack(">I4s", view[pos : pos + 8])
        body = view[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IEND":
            break
        if kind != b"IDAT" or inflater.eof:
            continue
        buf: bytes | memoryview = body
        while buf and not inflater.eof:
            try:
                out = inflater.decompress(buf, 65536)
            except zlib.error as e:
                raise ClientError(400, f"damaged PNG image data ({e})") from None
            produced += len(out)
            if produced > limit:
                raise ClientError(
                    400,
                    f"PNG image data inflates beyond the {limit} bytes its {header.width}x{header.height} "
                    "header declares (a decompression bomb); refused",
                )
            buf = inflater.unconsumed_tail
