"""Digit crops kept for retraining: every uncertain or rejected reading saves its digit windows.

Layout of the crops folder (what ``python -m convert finetune --images DIR`` reads)::

    DIR/unlabelled/20261208T031500Z_012987_p6_g7.png   # frame time, the reading, place 6, model's guess 7
    DIR/0/ .. DIR/9/                                   # crops a person named (``edge-infer meter label DIR``)
    DIR/n/                                             # "not a digit" (a drum between two digits, a blank)

Disk use is bounded: beyond ``max_bytes`` the oldest unlabelled crops are deleted (labelled ones
are never deleted: a person's work). Files are written under a temporary name and renamed.

Thread safety: :class:`CropStore` takes its own lock.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time as _time
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["CropStore", "LABELS", "label_dir", "labelled_crops", "unlabelled_crops"]

log = logging.getLogger(__name__)

#: Folder names of the labels: the digits and "n" for "not a digit" (class 10).
LABELS = tuple(str(d) for d in range(10)) + ("n",)
_NAME = re.compile(r"^[0-9TZ]+_[0-9?]+_p\d+_g[0-9?]\.png$")


def label_dir(label: str) -> str:
    """The folder name for a label typed by a person (``"7"``, ``"n"``, ``"10"`` -> ``"n"``).

    >>> label_dir("7"), label_dir("N"), label_dir("10")
    ('7', 'n', 'n')
    """
    t = label.strip().lower()
    if t in ("n", "10", "x", "-"):
        return "n"
    if t in LABELS:
        return t
    raise ValueError(f"label {label!r}: use 0-9, or n for 'not a digit'")


def unlabelled_crops(root: str | os.PathLike[str]) -> list[Path]:
    """The crops waiting for a label, oldest first."""
    d = Path(root) / "unlabelled"
    return sorted(d.glob("*.png")) if d.is_dir() else []


def labelled_crops(root: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """``(path, class)`` of every labelled crop under ``root`` (class 10 = not a digit), sorted by path."""
    out = []
    for lab in LABELS:
        d = Path(root) / lab
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"):
                    out.append((p, 10 if lab == "n" else int(lab)))
    return sorted(out)


class CropStore:
    """Saves digit crops under ``root/unlabelled`` within a disk budget.

    Args:
        root: The crops folder.
        max_bytes: Most bytes the unlabelled crops may use.
    """

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int = 50 * 1024 * 1024) -> None:
        self.root = Path(root)
        self.dir = self.root / "unlabelled"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._files = [(p, p.stat().st_size) for p in sorted(self.dir.glob("*.png"))]
        self._bytes = sum(s for _, s in self._files)

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def save(self, crops: Sequence[np.ndarray], guesses: Sequence[int | None], raw: str, when: float) -> list[Path]:
        """Saves one reading's crops (PNG); returns the files written."""
        import cv2

        stamp = _time.strftime("%Y%m%dT%H%M%S", _time.gmtime(when)) + f"{int(when * 1000) % 1000:03d}Z"
        raw_id = "".join(c if c.isdigit() else "?" for c in raw) or "?"
        written = []
        with self._lock:
            for i, (crop, g) in enumerate(zip(crops, guesses)):
                ok, buf = cv2.imencode(".png", crop)
                if not ok:
                    continue
                p = self.dir / f"{stamp}_{raw_id}_p{i + 1}_g{'?' if g is None else g}.png"
                tmp = p.with_name("." + p.name + ".tmp")
                tmp.write_bytes(buf.tobytes())
                os.replace(tmp, p)
                self._files.append((p, len(buf)))
                self._bytes += len(buf)
                written.append(p)
            if self._bytes > self.max_bytes:  # crops labelled meanwhile have left: count again
                self._files = [(p, p.stat().st_size) for p in sorted(self.dir.glob("*.png"))]
                self._bytes = sum(size for _, size in self._files)
            while self._bytes > self.max_bytes and self._files:
                old, size = self._files.pop(0)
                try:
                    old.unlink()
                except FileNotFoundError:
                    pass
                self._bytes -= size
        return written
