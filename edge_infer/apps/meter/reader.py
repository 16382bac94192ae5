"""MeterReader: one frame in, one :class:`Reading` out (aligned, read digit by digit, checked).

Example::

    from edge_infer.apps.meter import MeterReader, load_config
    with MeterReader(load_config("meter.toml")) as reader:
        r = reader.read(frame)
    r.status, r.value, r.raw          # ('ok', 1298.7, '012987')

The steps: align the frame to the reference (:mod:`.align`); cut the digit windows (or, with a
``display`` ROI, find the digits in it); classify them in one batch; then the rolling-drum rule and
the plausibility gate (:mod:`.plausibility`). Every reading goes to the history; the crops of a
reading that was not published go to the crop store (for labelling and fine-tuning).

Thread safety: ``read`` takes the reader's lock, so the web page may look at ``last`` while the
loop reads; the recogniser may be shared with other users (it is thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConfigError
from .align import Aligner, Alignment
from .config import MeterConfig, check_rois, load_config
from .crops import CropStore
from .history import History
from .plausibility import Gate, format_count

__all__ = ["MeterReader", "Reading"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reading:
    """One frame's reading.

    Attributes:
        value: The published value in the config's unit (status ``ok``), else None.
        digits: The digits read, left to right; None where unreadable (after the drum and plausibility rules).
        confidence: The lowest probability among the digits read (0.0 when a digit was unreadable).
        status: ``ok`` (published) or why not: see :data:`edge_infer.apps.meter.plausibility.STATUSES`.
        raw: What the model read, ``?`` for "not a digit" (e.g. ``"01298?"``).
        time: The frame's time (seconds since the epoch, or the caller's clock).
        reason: A few words on the status.
        scores: Each digit's probability, left to right.
        alignment: How the frame was aligned.
    """

    value: float | None
    digits: tuple[int | None, ...]
    confidence: float
    status: str
    raw: str
    time: float = 0.0
    reason: str = ""
    scores: tuple[float, ...] = ()
    alignment: Alignment | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """The value was published."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "value": self.value,
            "digits": list(self.digits),
            "confidence": round(self.confidence, 4),
            "status": self.status,
            "raw": self.raw,
            "time": self.time,
            "reason": self.reason,
            "scores": [round(s, 4) for s in self.scores],
            "alignment": self.alignment.to_dict() if self.alignment else None,
        }


def read_reference(path: Path) -> np.ndarray:
    """The reference frame from disk (uint8 BGR).

    Raises:
        ConfigError: It is missing or unreadable.
    """
    from ...image.io import read_image

    try:
        img = read_image(path)
    except FileNotFoundError:
        raise ConfigError(
            f"reference frame {path} is missing; run `edge-infer meter --config FILE --save-reference` "
            "to take it from the camera"
        ) from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"reference frame {path}: {e}") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def ink_polarity(crop: np.ndarray) -> bool:
    """True when the digit in a clean crop (the reference's) is darker than its background.

    The digit is the minority of an Otsu split of the crop's grey levels.
    """
    import cv2

    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    t, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return bool((gray > t).mean() > 0.5)


def flatten_light(crop: np.ndarray, dark_ink: bool) -> np.ndarray:
    """A digit crop with glare and uneven light taken out (grey, uint8).

    The background is what a grey closing (dark ink) or opening (light ink) with a kernel wider
    than a stroke leaves; the crop is divided by it (dark ink) or has it subtracted (light ink),
    then stretched to the full range. A glare spot on an LCD otherwise reads as ink or paper.
    """
    import cv2

    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    k = max(3, (min(gray.shape) * 2 // 3) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    g = gray.astype(np.float32)
    out: np.ndarray
    if dark_ink:
        bg = cv2.GaussianBlur(cv2.morphologyEx(g, cv2.MORPH_CLOSE, kernel), (0, 0), k / 4)
        out = g / np.maximum(bg, 1.0)
    else:
        bg = cv2.GaussianBlur(cv2.morphologyEx(g, cv2.MORPH_OPEN, kernel), (0, 0), k / 4)
        out = g - bg
    lo, hi = float(out.min()), float(out.max())
    return np.clip((out - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255).astype(np.uint8)


class MeterReader:
    """Reads one meter from its frames.

    Args:
        config: A :class:`MeterConfig` or the path of its TOML file.
        recognizer: A :class:`edge_infer.DigitRecognizer` to use (default: loads ``config.model``,
            or the shipped model); a recogniser passed in is not closed by :meth:`close`.
        reference: The reference frame (default: read from ``config.reference``).
        history: Where readings go (default: ``config.history``; ``":memory:"`` keeps none).
        crops: Where crops of unpublished readings go (default: ``config.crops``).

    Raises:
        ConfigError: The reference frame is missing or an ROI lies outside it.
    """

    def __init__(
        self,
        config: MeterConfig | str | os.PathLike[str],
        *,
        recognizer: Any = None,
        reference: np.ndarray | None = None,
        history: History | str | None = None,
        crops: CropStore | None = None,
    ) -> None:
        cfg = config if isinstance(config, MeterConfig) else load_config(config)
        self.config = cfg
        self.reference = read_reference(cfg.reference) if reference is None else reference
        check_rois(cfg, self.reference.shape)
        self._own_rec = recognizer is None
        if recognizer is None:
            from ...recognizer import DigitRecognizer

            recognizer = DigitRecognizer(cfg.model)
        self.recognizer = recognizer
        a = cfg.align
        self.aligner = (
            Aligner(self.reference, max_shift=a.max_shift, max_angle=a.max_angle, min_correlation=a.min_correlation)
            if a.enabled
            else None
        )
        if history is None:
            history = History(cfg.history) if cfg.history else History(":memory:")
        elif isinstance(history, str):
            history = History(history)
        self.history = history
        if crops is None and cfg.crops.dir is not None:
            crops = CropStore(cfg.crops.dir, max_bytes=int(cfg.crops.max_mb * 1024 * 1024))
        self.crops = crops
        self.scale = 10**cfg.decimals
        last = self.history.last_good()
        self.gate = Gate(
            cfg.plausibility,
            digits=cfg.digits,
            decimals=cfg.decimals,
            rolling=cfg.kind == "drum",
            last=None if last is None else (round(last[0] * self.scale), last[1]),
        )
        if last is not None:
            log.info("%s: last good value %s from the history", cfg.name, last[0])
        self._dark_ink = [ink_polarity(self.reference[y : y + h, x : x + w]) for x, y, w, h in cfg.rois]
        self._lock = threading.Lock()
        #: The last reading, its aligned frame and its digit crops (for the web page).
        self.last: Reading | None = None
        self.last_frame: np.ndarray | None = None
        self.last_crops: list[np.ndarray] = []

    # ------------------------------------------------------------------ reading
    def _digit_crops(self, frame: np.ndarray) -> tuple[list[np.ndarray], list[Any]]:
        cfg = self.config
        box = cfg.display
        if cfg.rois or box is None:
            crops = [np.ascontiguousarray(frame[y : y + h, x : x + w]) for x, y, w, h in cfg.rois]
            flat = [flatten_light(c, dark) for c, dark in zip(crops, self._dark_ink)]
            return crops, self.recognizer.classify_batch(flat)
        # a display: find the digits inside it; the longest number is the reading
        # the digits fill most of the display's height (the default limit is half of it)
        numbers = self.recognizer.read_numbers(frame, roi=box, max_height=box[3])
        if not numbers:
            return [], []
        whole = [n for n in numbers if len(n.digits) == cfg.digits]
        best = max(whole or numbers, key=lambda n: (n.box[2] * n.box[3]) if whole else len(n.digits))
        crops = [np.ascontiguousarray(frame[y : y + h, x : x + w]) for x, y, w, h in (d.box for d in best.digits)]
        return crops, self.recognizer.classify_batch(crops)

    def read(self, frame: np.ndarray, *, time: float | None = None) -> Reading:
        """Reads one frame.

        Args:
            frame: uint8 BGR frame from the meter's camera (the reference frame's size).
            time: The frame's time in seconds (default: now). Must not go backwards.

        Returns:
            The :class:`Reading` (also recorded in the history).
        """
        now = _time.time() if time is None else float(time)
        cfg = self.config
        n = cfg.digits
        with self._lock:
            aligned, info = (frame, None) if self.aligner is None else self.aligner.align(frame)
            if aligned is None:
                reading = Reading(
                    None, (None,) * n, 0.0, "unaligned", "?" * n, now, info.reason if info else "", (), info
                )
                self._record(reading, frame, [], [])
                return reading
            crops, preds = self._digit_crops(aligned)
            if cfg.display is not None and len(preds) != n:  # all the meter's digits, or no reading
                found = len(preds)
                reading = Reading(
                    None,
                    (None,) * n,
                    0.0,
                    "uncertain",
                    "?" * n,
                    now,
                    f"found {found} digits in the display, expected {n}",
                    (),
                    info,
                )
                self._record(reading, aligned, crops, [p.digit for p in preds])
                return reading
            digits = [p.digit if p.is_digit else None for p in preds]
            scores = [p.score if p.is_digit else p.reject_score for p in preds]
            raw = "".join("?" if d is None else str(d) for d in digits)
            decision = self.gate.decide(digits, [s if d is not None else 0.0 for d, s in zip(digits, scores)], now)
            value = None if decision.count is None else decision.count / self.scale
            if value is not None and cfg.decimals:
                value = round(value, cfg.decimals)
            conf = 0.0 if any(d is None for d in decision.digits) else min(scores, default=0.0)
            reading = Reading(
                value,
                decision.digits,
                float(conf),
                decision.status,
                raw,
                now,
                decision.reason,
                tuple(float(s) for s in scores),
                info,
            )
            if decision.status != "ok":
                log.debug("%s: %s (%s): %s", cfg.name, decision.status, raw, decision.reason)
            self._record(reading, aligned, crops, digits)
            return reading

    def _record(self, reading: Reading, frame: np.ndarray, crops: list[np.ndarray], guesses: list[Any]) -> None:
        self.last, self.last_frame, self.last_crops = reading, frame, crops
        self.history.add(reading.time, reading.value, reading.status, reading.raw, reading.confidence)
        if self.crops is not None and reading.status not in ("ok", "unaligned") and crops:
            try:
                self.crops.save(crops, guesses, reading.raw, reading.time)
            except OSError as e:  # a full disk must not stop the readings
                log.warning("could not save crops to %s: %s", self.crops.dir, e)

    def set_rois(self, rois: Any, *, display: Any = None, save: bool = True) -> MeterConfig:
        """Replaces the digit windows (or the display box), from the next reading on.

        Args:
            rois: ``[[x, y, w, h], ...]`` left to right, or None with ``display``.
            display: ``[x, y, w, h]`` of one display instead of ``rois``.
            save: Also write the config file (atomically), when it came from one.

        Returns:
            The new config.

        Raises:
            ConfigError: A box that is malformed or outside the reference frame.
        """
        from .config import parse_config
        from .configfile import save_config, to_dict

        data = to_dict(self.config)
        data.pop("rois", None)
        data.pop("display", None)
        data.pop("digits", None)
        if display is not None:
            data["display"] = display
            data["digits"] = self.config.digits
        else:
            data["rois"] = rois
        base = self.config.path.parent if self.config.path else None
        cfg = parse_config(data, base=base, path=self.config.path)
        check_rois(cfg, self.reference.shape)
        if save and cfg.path is not None:
            save_config(cfg)
        with self._lock:
            self.config = cfg
            self._dark_ink = [ink_polarity(self.reference[y : y + h, x : x + w]) for x, y, w, h in cfg.rois]
            if cfg.digits != self.gate.n:
                self.gate = Gate(
                    cfg.plausibility,
                    digits=cfg.digits,
                    decimals=cfg.decimals,
                    rolling=cfg.kind == "drum",
                    last=self.gate.last,
                )
        return cfg

    def format(self, value: float) -> str:
        """A value as the meter shows it (leading zeros, the decimal point)."""
        return format_count(round(value * self.scale), self.config.digits, self.config.decimals)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Closes the history and the recogniser it loaded; safe to call twice."""
        self.history.close()
        if self._own_rec and self.recognizer is not None:
            self.recognizer.close()
            self.recognizer = None

    def __enter__(self) -> MeterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
