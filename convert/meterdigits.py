"""Real camera crops of meter digits: ``meter-digits`` (haverland/Tenth-of-step-of-a-meter-digit, Apache-2.0).

The dataset (see its README) holds 15,927 crops of single digits from cameras on gas,
water and power meters: counter drums and LCD seven-segment digits, 20-110 px tall,
with the neighbouring digits cut in at the top and bottom. ``manifest.csv`` gives per
crop the drum ``value`` (``7.3`` = 30% of the way from 7 to 8), a ``label`` (``0``-``9``
within 0.2 of a digit, else ``N``), the ``meter_type``, the ``device`` and the ``split``.

:func:`load_meter_digits` reads one split and normalises every crop with the runtime's
own :func:`edge_infer.to_mnist`, letting it guess the polarity from the crop, exactly as
``DigitRecognizer.classify`` does with a crop it is given. Labels: the digit, or 10
("not a digit") for ``N`` (a drum between two digits, or blank). The normalised arrays
are cached in an ``.npz`` keyed by the manifest's hash and the split.

Never train on the ``eval`` split (six whole meters kept apart): its figures say how a
model does on meters it has not seen. :func:`rolling_safe` scores the drum rule: a crop
between two digits must be answered as one of them or as "not a digit".

Needs OpenCV (to read the images).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import DataError

__all__ = [
    "ATTRIBUTION",
    "DEFAULT_DIR",
    "LICENSE_NAME",
    "MeterDigits",
    "SOURCE",
    "load_meter_digits",
    "rolling_safe",
    "safe_answers",
]

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
#: ``../shared/datasets/meter-digits`` beside the checkout.
DEFAULT_DIR = REPO.parent / "shared" / "datasets" / "meter-digits"
DEFAULT_CACHE = REPO / "runs" / "cache"
SOURCE = (
    "meter-digits: the images/collected folder of github.com/haverland/Tenth-of-step-of-a-meter-digit "
    "(commit ebf9b2ba33b56a45d97b5463d19e8035d4afbb12)"
)
LICENSE_NAME = "Apache-2.0"
ATTRIBUTION = (
    f"Trained in part on {SOURCE}, licensed {LICENSE_NAME}; copyright of the images stays with their authors. "
    "Only its train split was used for training; its eval split (six whole meters) is the reported figure."
)
_VERSION = 1  # bump when the normalisation changes: old caches are then ignored


@dataclass(frozen=True)
class MeterDigits:
    """One split of meter-digits, normalised.

    Attributes:
        x: uint8 ``(N, 28, 28)``, white on black, as :func:`edge_infer.to_mnist` lays out a crop.
        y: uint8 ``(N,)``: 0-9, or 10 for "not a digit" (label ``N``).
        value: float32 ``(N,)``: the drum's value (``7.3``), 10 for no digit.
        meter_type: ``(N,)`` str: gasmeter, watermeter, powermeter, lcd, lcd2, new.
        device: ``(N,)`` str: the meter or collection a crop comes from.
        path: ``(N,)`` str: image path relative to the dataset folder.
        split: "train" or "eval".
    """

    x: np.ndarray
    y: np.ndarray
    value: np.ndarray
    meter_type: np.ndarray
    device: np.ndarray
    path: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.y)

    @property
    def rolling(self) -> np.ndarray:
        """Mask of the crops of a drum between two digits (label N, value not a whole digit, not blank)."""
        return (self.y == 10) & (self.value < 10)

    def subset(self, mask: np.ndarray) -> MeterDigits:
        """The crops where ``mask`` (boolean or indices) holds."""
        return MeterDigits(
            self.x[mask],
            self.y[mask],
            self.value[mask],
            self.meter_type[mask],
            self.device[mask],
            self.path[mask],
            self.split,
        )


def _read_manifest(root: Path) -> list[dict[str, str]]:
    man = root / "manifest.csv"
    if not man.is_file():
        raise DataError(f"{root}: no manifest.csv here; pass the meter-digits folder (with manifest.csv and images/)")
    with open(man, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"path", "value", "label", "meter_type", "device", "split"}
    if not rows or not need <= set(rows[0]):
        raise DataError(f"{man}: expected columns {sorted(need)}")
    return rows


def _label(text: str) -> int:
    return 10 if text.strip().upper() == "N" else int(text)


def read_crop(path: Path) -> np.ndarray:
    """One image file as a BGR (or grayscale) uint8 array, as a camera frame crop.

    Raises:
        DataError: the file cannot be decoded.
    """
    import cv2

    img = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{path}: cannot decode this image")
    return img


def load_meter_digits(
    split: str,
    root: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = DEFAULT_CACHE,
    invert: bool | None = None,
) -> MeterDigits:
    """Read and normalise one split of meter-digits.

    Args:
        split: "train" (the only split to train on) or "eval".
        root: the dataset folder (default ``../shared/datasets/meter-digits`` beside the checkout).
        cache_dir: where the normalised arrays are kept (an ``.npz`` per split, polarity
            and manifest); None to neither read nor write a cache.
        invert: polarity passed to :func:`edge_infer.to_mnist`; None lets it guess from
            each crop, as the runtime does with a crop it is given.

    Returns:
        The split, in manifest order.

    Raises:
        DataError: the folder, manifest or an image is missing or unreadable, or ``split`` is unknown.
    """
    from edge_infer import to_mnist

    if split not in ("train", "eval"):
        raise DataError(f"split must be 'train' or 'eval', got {split!r}")
    root = Path(root) if root is not None else DEFAULT_DIR
    rows = [r for r in _read_manifest(root) if r["split"] == split]
    digest = hashlib.sha256((root / "manifest.csv").read_bytes()).hexdigest()[:16]
    pol = {None: "auto", True: "dark", False: "light"}[invert]
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"meterdigits_{split}_{pol}_{digest}_v{_VERSION}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=False) as z:
                x = z["x"]
    meta = {
        "y": np.array([_label(r["label"]) for r in rows], np.uint8),
        "value": np.array([float(r["value"]) for r in rows], np.float32),
        "meter_type": np.array([r["meter_type"] for r in rows]),
        "device": np.array([r["device"] for r in rows]),
        "path": np.array([r["path"] for r in rows]),
    }
    if cache is None or not cache.is_file() or len(x) != len(rows):
        log.info("normalising %d meter-digits %s crops from %s (polarity %s)", len(rows), split, root, pol)
        x = np.zeros((len(rows), 28, 28), np.uint8)
        for i, r in enumerate(rows):
            x[i] = to_mnist(read_crop(root / r["path"]), invert=invert)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, x=x)
            os.replace(tmp, cache)
    x.flags.writeable = False
    return MeterDigits(x=x, split=split, **meta)


def safe_answers(value: float) -> tuple[int, ...]:
    """The classes a safe answer may take for a drum at ``value``: its two digits and 10.

    >>> safe_answers(7.3), safe_answers(9.5)
    ((7, 8, 10), (9, 0, 10))
    """
    lo = int(np.floor(value)) % 10
    return (lo, (lo + 1) % 10, 10)


def rolling_safe(pred: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per crop: is ``pred`` (argmax over 11 classes) one of the two neighbour digits or 10?

    >>> rolling_safe(np.array([7, 8, 10, 3, 0]), np.array([7.3, 7.5, 7.5, 7.5, 9.6])).tolist()
    [True, True, True, False, True]
    """
    lo = np.floor(value).astype(np.int64) % 10
    pred = np.asarray(pred).astype(np.int64)
    return (pred == lo) | (pred == (lo + 1) % 10) | (pred == 10)
