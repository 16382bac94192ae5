"""Undoing small camera moves: each frame is aligned to the reference frame before the ROIs are cut.

A bumped mount or a flexing housing moves the picture a few pixels and a degree or two; the
ROIs drawn on the reference frame then cut the wrong place. :class:`Aligner` finds the rotation
and shift (a Euclidean motion) that maps the reference onto the frame with OpenCV's ECC
(enhanced correlation coefficient) maximisation, coarse to fine on a small grey copy, and warps
the frame back. ECC's correlation does not care about exposure (gain and offset), so a brighter
or darker frame aligns as well. A frame that does not converge, moved more than allowed, or
correlates too little afterwards (a hand in front, the camera knocked away) is reported, not read.

Thread safety: an :class:`Aligner` holds only the reference; ``align`` may run in several threads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = ["Aligner", "Alignment"]

log = logging.getLogger(__name__)

_WORK_SIDE = 320  # the longest side of the grey copy the fine ECC level runs on


@dataclass(frozen=True)
class Alignment:
    """How a frame was aligned.

    Attributes:
        ok: The frame was aligned within the limits (and may be read).
        dx, dy: Shift of the frame against the reference, in reference pixels.
        angle: Rotation in degrees (counter-clockwise positive).
        correlation: ECC correlation after alignment (1.0 = identical up to exposure).
        reason: Why not, when ``ok`` is False.
    """

    ok: bool
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    correlation: float = 1.0
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "ok": self.ok,
            "dx": round(self.dx, 2),
            "dy": round(self.dy, 2),
            "angle": round(self.angle, 3),
            "correlation": round(self.correlation, 4),
            "reason": self.reason,
        }


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img


class Aligner:
    """Aligns frames to a reference frame (see the module docstring).

    Args:
        reference: The reference frame (uint8 BGR or grey) the ROIs were drawn on.
        max_shift: Largest shift accepted, in reference pixels.
        max_angle: Largest rotation accepted, in degrees.
        min_correlation: Least correlation after alignment.
    """

    def __init__(
        self,
        reference: np.ndarray,
        *,
        max_shift: float = 25.0,
        max_angle: float = 5.0,
        min_correlation: float = 0.6,
    ) -> None:
        import cv2

        self.shape = reference.shape[:2]
        self.max_shift = max_shift
        self.max_angle = max_angle
        self.min_correlation = min_correlation
        h, w = self.shape
        self.scale = min(1.0, _WORK_SIDE / max(h, w))
        self._ref = [self._prepare(_gray(reference), self.scale / 2), self._prepare(_gray(reference), self.scale)]
        self._mask = [np.full(r.shape, 255, np.uint8) for r in self._ref]  # every pixel counts
        del cv2

    @staticmethod
    def _prepare(gray: np.ndarray, scale: float) -> np.ndarray:
        import cv2

        h, w = gray.shape
        small = cv2.resize(gray, (max(8, round(w * scale)), max(8, round(h * scale))), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small.astype(np.float32), (0, 0), 1.0)

    def align(self, frame: np.ndarray) -> tuple[np.ndarray | None, Alignment]:
        """Aligns one frame.

        Args:
            frame: uint8 BGR (or grey) frame the size of the reference.

        Returns:
            ``(aligned frame, Alignment)``; the frame is None when ``Alignment.ok`` is False.
        """
        import cv2

        if frame.shape[:2] != self.shape:
            h, w = self.shape
            return None, Alignment(False, reason=f"frame is {frame.shape[1]}x{frame.shape[0]}, the reference {w}x{h}")
        gray = _gray(frame)
        warp: Any = np.eye(2, 3, dtype=np.float32)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 60, 1e-5)
        rho = 0.0
        for level, (ref, mask, scale) in enumerate(zip(self._ref, self._mask, (self.scale / 2, self.scale))):
            img = self._prepare(gray, scale)
            if level:
                warp[:, 2] *= 2  # translation to this level's pixels
            try:  # the images are blurred already: no more of it (gaussFiltSize 1)
                rho, warp = cv2.findTransformECC(ref, img, warp, cv2.MOTION_EUCLIDEAN, criteria, mask, 1)
            except cv2.error as e:
                return None, Alignment(False, correlation=0.0, reason=f"alignment did not converge ({str(e)[-60:]})")
        full = warp.astype(np.float64).copy()
        full[:, 2] /= self.scale
        angle = math.degrees(math.atan2(full[1, 0], full[0, 0]))
        # the shift at the image centre, which is what a bumped mount looks like
        h, w = self.shape
        cx, cy = w / 2, h / 2
        sx = full[0, 0] * cx + full[0, 1] * cy + full[0, 2] - cx
        sy = full[1, 0] * cx + full[1, 1] * cy + full[1, 2] - cy
        info = Alignment(True, float(sx), float(sy), angle, float(rho))
        if abs(angle) > self.max_angle or math.hypot(sx, sy) > self.max_shift:
            return None, replace(
                info,
                ok=False,
                reason=f"moved {math.hypot(sx, sy):.1f} px and {angle:.1f} degrees, more than "
                f"{self.max_shift:g} px / {self.max_angle:g} degrees: redraw the ROIs on a new reference",
            )
        if rho < self.min_correlation:
            return None, replace(
                info,
                ok=False,
                reason=f"correlation {rho:.2f} after alignment is below {self.min_correlation:g} "
                "(something in front of the meter, or a different view)",
            )
        aligned = cv2.warpAffine(
            frame, full, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )
        return aligned, info
