"""The benchmark's scene set and its baseline detector.

Two things the ``detect`` section of ``python -m bench`` needs from a checkout:

* :func:`load_scenes`: 640x480 frames with about a dozen digits each, drawn by
  ``tests/scenes.py`` from MNIST test digits and fonts (seeds from 10,000, the
  range kept for the benchmark), cached under ``bench/results/cache``.
* :class:`BaselineDetector`: the straightforward pipeline that ``detect`` is
  measured against, in the manner of OpenCV's digit-recognition sample: one
  gray conversion, an adaptive threshold (dark ink on light paper), external
  contours, a size and shape filter, each box's binary crop scaled to 20 px and
  centred by its moments in 28x28, and one interpreter invoke per crop. It uses
  the same model and the same score threshold as ``detect`` (0.7), so precision
  differences come from finding digits, not from reading them.

Run it alone for the baseline's recall and precision on the scene set::

    python bench/detect_baseline.py --frames 30
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCENES_PY = ROOT / "tests" / "scenes.py"
FIRST_SEED = 10_000
CACHE_DIR = ROOT / "bench" / "results" / "cache"


@dataclass(frozen=True)
class BaselineDetection:
    """What the baseline reports for a digit: the fields ``tests/scenes.match`` reads."""

    box: tuple[int, int, int, int]
    digit: int
    score: float


class BaselineDetector:
    """Adaptive threshold + contours + one invoke per crop (see the module docstring).

    Args:
        interpreter: A TFLite interpreter of a 28x28x1 int8 or float digit model,
            tensors allocated at batch 1.
        min_height: Smallest box height kept, in pixels (as ``detect``'s default).
        max_height: Largest box height; None for half the frame height.
        min_score: Drop digits read with a lower probability (as ``detect``'s default).
        block: Adaptive threshold window, in pixels (odd).
        offset: Adaptive threshold offset below the local mean, in gray levels.
    """

    def __init__(
        self,
        interpreter: Any,
        *,
        min_height: int = 16,
        max_height: int | None = None,
        min_score: float = 0.7,
        block: int = 31,
        offset: int = 10,
    ) -> None:
        self.interp = interpreter
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self.in_index, self.out_index = inp["index"], out["index"]
        self.in_dtype = inp["dtype"]
        self.in_scale, self.in_zero = inp["quantization"]
        self.out_scale, self.out_zero = out["quantization"]
        self.min_height, self.max_height = min_height, max_height
        self.min_score, self.block, self.offset = min_score, block, offset

    def _classify(self, digit28: np.ndarray) -> tuple[int, float]:
        x = digit28.astype(np.float32)[None, :, :, None] / 255.0
        if self.in_scale:
            x = np.clip(np.rint(x / self.in_scale) + self.in_zero, -128, 127)
        self.interp.set_tensor(self.in_index, x.astype(self.in_dtype))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out_index)[0].astype(np.float32)
        if self.out_scale:
            y = (y - self.out_zero) * self.out_scale
        d = int(np.argmax(y))
        return d, float(y[d])

    @staticmethod
    def _to_mnist(roi: np.ndarray) -> np.ndarray:
        """Binary ink crop -> 28x28: longest side 20 px, centre of mass at the centre."""
        import cv2

        h, w = roi.shape
        s = 20.0 / max(h, w)
        small = cv2.resize(roi, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        m = cv2.moments(small)
        sh, sw = small.shape
        cx, cy = (m["m10"] / m["m00"], m["m01"] / m["m00"]) if m["m00"] else (sw / 2, sh / 2)
        shift = np.float32([[1, 0, 13.5 - cx], [0, 1, 13.5 - cy]])
        return cv2.warpAffine(small, shift, (28, 28), flags=cv2.INTER_LINEAR)

    def __call__(self, frame: np.ndarray) -> list[BaselineDetection]:
        import cv2

        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        ink = cv2.adaptiveThreshold(
            gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, self.block, self.offset
        )
        contours, _ = cv2.findContours(ink, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        max_h = self.max_height or gray.shape[0] // 2
        found = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if not (self.min_height <= h <= max_h and w <= 1.2 * h):
                continue
            roi = ink[y : y + h, x : x + w]
            if not 0.1 <= cv2.countNonZero(roi) / float(w * h) <= 0.75:
                continue
            digit, score = self._classify(self._to_mnist(roi))
            if score >= self.min_score:
                found.append(BaselineDetection((x, y, w, h), digit, score))
        return found


# --------------------------------------------------------------------------- scenes


def _scenes_module() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import scenes

    return scenes


def _mnist_test(mnist_path: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from convert.data import load_mnist

    data = load_mnist(mnist_path, download=False)
    return data.x_test, data.y_test, data.source


@dataclass(frozen=True)
class SceneSet:
    """Frames (uint8 BGR), their truth, and MNIST test digits for the classify sections.

    Attributes:
        frames: The frames.
        truths: Per frame, a tuple of ``tests.scenes.Truth``.
        seeds: The scene seeds.
        digits: ``(64, 28, 28)`` uint8 MNIST test digits.
        source: Where MNIST came from, and whether the cache was used.
    """

    frames: list[np.ndarray]
    truths: list[tuple[Any, ...]]
    seeds: list[int]
    digits: np.ndarray
    source: str


def load_scenes(
    n_frames: int,
    *,
    digits_per_frame: tuple[int, int] = (8, 16),
    mnist_path: str | None = None,
    use_cache: bool = True,
    progress: Any = None,
) -> SceneSet:
    """The first ``n_frames`` scenes from seed 10,000 on with 8-16 digits (mean near 12).

    The frames depend only on ``tests/scenes.py`` and MNIST, so they are cached in
    ``bench/results/cache`` under a key of the generator's source hash and the count.

    Raises:
        convert.errors.DataError: MNIST cannot be found (the message says how to get it).
    """
    scenes = _scenes_module()
    key = hashlib.sha256(SCENES_PY.read_bytes() + repr((n_frames, digits_per_frame)).encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"scenes-{key}.npz"
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            frames = list(z["frames"])
            seeds = [int(s) for s in z["seeds"]]
            rows = z["truth"]  # (k, 7): frame, x, y, w, h, digit, is_mnist
            digits = z["digits"]
            source = str(z["source"]) + " (cached)"
        truths = [
            tuple(
                scenes.Truth(tuple(int(v) for v in r[1:5]), int(r[5]), "mnist" if r[6] else "printed")
                for r in rows
                if r[0] == i
            )
            for i in range(len(frames))
        ]
        return SceneSet(frames, truths, seeds, digits, source)
    x, y, source = _mnist_test(mnist_path)
    frames, truths, seeds = [], [], []
    seed = FIRST_SEED
    lo, hi = digits_per_frame
    while len(frames) < n_frames:
        s = scenes.make_scene(seed, (x, y))
        if lo <= len(s.digits) <= hi:
            frames.append(s.frame)
            truths.append(s.digits)
            seeds.append(seed)
            if progress:
                progress(f"scene {len(frames)}/{n_frames} (seed {seed}, {len(s.digits)} digits)")
        seed += 1
    digits = np.ascontiguousarray(x[:64])
    if use_cache:
        rows = np.array(
            [(i, *t.box, t.digit, t.source == "mnist") for i, ts in enumerate(truths) for t in ts], np.int32
        ).reshape(-1, 7)
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez_compressed(
            tmp, frames=np.stack(frames), seeds=np.array(seeds), truth=rows, digits=digits, source=np.array(source)
        )
        tmp.replace(cache)
    return SceneSet(frames, truths, seeds, digits, source)


def score(detections_per_frame: list[list[Any]], truths: list[tuple[Any, ...]]) -> dict[str, float]:
    """Recall and precision over the whole set (``tests.scenes.match`` per frame)."""
    scenes = _scenes_module()
    tp = fp = fn = 0
    for dets, truth in zip(detections_per_frame, truths):
        m = scenes.match(dets, truth)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    return {
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


def main(argv: list[str] | None = None) -> int:
    """Recall and precision of the baseline and of ``detect`` on the scene set."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--mnist", default=None, help="a Keras mnist.npz or IDX directory (default: convert's search)")
    a = ap.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from edge_infer import DigitRecognizer
    from edge_infer.runtime.backend import get_backend

    s = load_scenes(a.frames, mnist_path=a.mnist)
    with DigitRecognizer(delegate="cpu", num_threads=1) as rec:
        interp = get_backend().new_interpreter(rec.model.path.read_bytes(), num_threads=1)
        interp.allocate_tensors()
        base = BaselineDetector(interp)
        for name, fn in (("baseline", base), ("detect", rec.detect)):
            r = score([fn(f) for f in s.frames], s.truths)
            print(
                f"{name:<9} recall {r['recall']:.3f}  precision {r['precision']:.3f}  "
                f"(tp {r['tp']}, fp {r['fp']}, fn {r['fn']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
