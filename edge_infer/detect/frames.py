"""Frames in: checks, colour order, alpha, and the region of interest.

A frame is a uint8 numpy array: ``(h, w)`` gray, ``(h, w, 3)`` or ``(h, w, 4)`` colour.
Colour frames are BGR(A) by default, as OpenCV gives them; ``color="rgb"`` takes
R, G, B(, X) order, as Picamera2's ``XBGR8888`` and ``RGB888`` arrays and PIL give them.
"""

from __future__ import annotations

from typing import Any, Sequence, Tuple

import numpy as np

from ..image.preprocess import flatten_alpha

__all__ = ["COLORS", "Roi", "check_frame", "check_roi", "frame_gray", "positive_int", "to_bgr"]

#: ``(x, y, w, h)`` in frame pixels.
Roi = Tuple[int, int, int, int]
COLORS = ("bgr", "rgb")


def check_frame(frame: Any) -> np.ndarray:
    if frame is None or not isinstance(frame, np.ndarray):
        raise TypeError(
            f"frame must be a numpy array (h, w) or (h, w, 3|4) of uint8, not {type(frame).__name__}"
            + (" (did the camera return no frame?)" if frame is None else "")
        )
    if frame.ndim == 4:
        raise ValueError(f"frame has shape {frame.shape}: a batch of frames; pass one frame (h, w[, c]) at a time")
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (1, 3, 4)):
        raise ValueError(f"frame has shape {frame.shape}; expected (h, w) gray or (h, w, 3|4) BGR(A)")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"frame dtype is {frame.dtype}; expected uint8 (0-255) as cameras and cv2.imread give "
            "(convert with np.clip(x, 0, 255).astype(np.uint8))"
        )
    return frame


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_roi(roi: Any, shape: Sequence[int]) -> Roi:
    """A region of interest ``(x, y, w, h)`` checked against a frame's ``(h, w)``, clipped to it.

    Raises:
        ValueError: Not four ints, a side under 8 px, or no overlap with the frame.

    >>> check_roi((10, 20, 100, 50), (480, 640))
    (10, 20, 100, 50)
    >>> check_roi([600, 400, 100, 100], (480, 640))
    (600, 400, 40, 80)
    """
    try:
        vals = [v for v in roi]
    except TypeError:
        raise ValueError(f"roi must be (x, y, w, h) in frame pixels, got {roi!r}") from None
    if len(vals) != 4 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in vals):
        raise ValueError(f"roi must be four ints (x, y, w, h) in frame pixels, got {roi!r}")
    x, y, w, h = (int(v) for v in vals)
    if w < 8 or h < 8 or x < 0 or y < 0:
        raise ValueError(f"roi {roi!r} needs x, y >= 0 and w, h >= 8 pixels")
    H, W = int(shape[0]), int(shape[1])
    x1, y1 = min(x + w, W), min(y + h, H)
    if x1 - x < 8 or y1 - y < 8:
        raise ValueError(f"roi {roi!r} lies outside the {W}x{H} frame (or leaves under 8 px of it)")
    return (x, y, x1 - x, y1 - y)


def to_bgr(frame: np.ndarray, color: str) -> np.ndarray:
    """A checked frame in BGR(A) order (gray is returned as it is); see-through BGRA laid on paper.

    Raises:
        ValueError: ``color`` is not ``"bgr"`` or ``"rgb"``.
    """
    if color not in COLORS:
        raise ValueError(f"color must be 'bgr' (OpenCV) or 'rgb' (Picamera2, PIL), got {color!r}")
    if frame.ndim == 3 and frame.shape[2] in (3, 4):
        if color == "rgb":  # R, G, B(, X): the fourth byte is padding, not alpha
            return np.ascontiguousarray(frame[:, :, 2::-1])
        if frame.shape[2] == 4 and frame[:, :, 3].min() < 255:
            frame = flatten_alpha(frame)  # a camera's BGRA is opaque; a transparent PNG's is not
    return frame


def frame_gray(frame: np.ndarray, color: str = "bgr") -> np.ndarray:
    """A checked frame as 2-D uint8 gray, in frame pixels (needs OpenCV for colour frames)."""
    frame = to_bgr(frame, color)
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY if frame.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
