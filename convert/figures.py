"""PNG figures for the conversion report, drawn with Pillow (no matplotlib needed)."""

from __future__ import annotations

import io
import os

import numpy as np

__all__ = ["confusion_png", "digit_grid_png"]


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size font
        return ImageFont.load_default()


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def confusion_png(cm: np.ndarray, *, title: str, labels: list[str] | None = None) -> bytes:
    """A square confusion matrix (rows: true class, columns: predicted) as PNG bytes.

    ``labels`` name the classes (default ``0 .. n-1``); 10 digits or 11 with "not a digit".

    Off-diagonal cells are shaded by count relative to the largest error, so
    the rare mistakes stay visible next to the ~1000-count diagonal.
    """
    from PIL import Image, ImageDraw

    n = cm.shape[0]
    labels = labels or [str(i) for i in range(n)]
    cell, left, top = 46, 60, 70
    w, h = left + n * cell + 20, top + n * cell + 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    f, fs, ft = _font(14), _font(12), _font(16)
    d.text((left, 10), title, fill="black", font=ft)
    d.text((left + n * cell // 2 - 40, 40), "predicted", fill="black", font=fs)
    d.text((6, top + n * cell // 2 - 6), "true", fill="black", font=fs)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    max_off = max(int(off.max()), 1)
    for i in range(n):
        lw = d.textlength(labels[i], font=f)
        d.text((left - 8 - lw, top + i * cell + cell // 2 - 7), labels[i], fill="black", font=f)
        d.text((left + i * cell + (cell - lw) / 2, top - 18), labels[i], fill="black", font=f)
        for j in range(n):
            v = int(cm[i, j])
            x0, y0 = left + j * cell, top + i * cell
            if i == j:
                color = (200, 230, 200)
            elif v == 0:
                color = (250, 250, 250)
            else:
                t = 0.25 + 0.75 * v / max_off
                color = (255, int(235 - 175 * t), int(235 - 175 * t))
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=color, outline=(210, 210, 210))
            if v:
                s = str(v)
                tw = d.textlength(s, font=fs)
                d.text((x0 + (cell - tw) / 2, y0 + cell // 2 - 7), s, fill="black", font=fs)
    d.text((left, top + n * cell + 12), "diagonal: correct; red: errors (darker = more)", fill="gray", font=fs)
    return _png(img)


def digit_grid_png(
    images: np.ndarray, captions: list[str], *, cols: int = 10, scale: int = 3, title: str = ""
) -> bytes:
    """Tile 28x28 uint8 digits (white on black) with a caption under each."""
    from PIL import Image, ImageDraw

    k = len(images)
    cols = max(1, min(cols, k)) if k else 1
    rows = max(1, -(-k // cols))
    tile, cap, head = 28 * scale, 16, 28 if title else 4
    img = Image.new("RGB", (cols * (tile + 6) + 6, head + rows * (tile + cap + 6)), "white")
    d = ImageDraw.Draw(img)
    f = _font(12)
    if title:
        d.text((6, 6), title, fill="black", font=_font(14))
    for n in range(k):
        r, c = divmod(n, cols)
        x, y = 6 + c * (tile + 6), head + r * (tile + cap + 6)
        digit = Image.fromarray(np.asarray(images[n], np.uint8)).resize((tile, tile), Image.NEAREST)
        img.paste(digit.convert("RGB"), (x, y))
        d.text((x, y + tile + 1), captions[n], fill="black", font=f)
    return _png(img)


def save(path: str | os.PathLike[str], png: bytes) -> None:
    """Write PNG bytes atomically."""
    from convert.atomic import write_bytes

    write_bytes(path, png)
