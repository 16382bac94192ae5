"""DigitRecognizer: the device-app API (classify crops, detect digits in frames)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ModelError
from .model import Model, load_model
from .preprocess import MNIST_SIZE, to_mnist

__all__ = ["Detection", "DigitRecognizer", "Prediction"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The answer for one digit crop.

    Attributes:
        digit: The most likely digit, 0-9 (the best digit even when the crop
            looks like no digit at all: check ``is_digit``).
        score: Its probability.
        scores: All class probabilities (read-only float32 array): 10 for a
            digits-only model, 11 when the model has a "not a digit" class
            (the shipped model does; index 10).
        is_digit: False when the model's "not a digit" class wins (always True
            for a digits-only model).
        reject_score: The probability of "not a digit" (0.0 for a digits-only model).
    """

    digit: int
    score: float
    scores: np.ndarray = field(repr=False, compare=False)
    is_digit: bool = True
    reject_score: float = 0.0


@dataclass(frozen=True)
class Detection:
    """A digit found in a frame.

    Attributes:
        box: ``(x, y, w, h)`` in frame pixels.
        digit: The digit read, 0-9.
        score: Its probability.
    """

    box: tuple[int, int, int, int]
    digit: int
    score: float


_new = object.__new__
_set = object.__setattr__


def _prediction(digit: int, score: float, scores: np.ndarray, is_digit: bool, reject_score: float) -> Prediction:
    """Prediction(...) with one attribute write instead of the frozen dataclass's five."""
    p = _new(Prediction)
    _set(
        p,
        "__dict__",
        {"digit": digit, "score": score, "scores": scores, "is_digit": is_digit, "reject_score": reject_score},
    )
    return p


class _Slot:
    """One interpreter, its lock, and its batch-1 input buffer (used under the lock)."""

    __slots__ = ("model", "lock", "buffer", "pixels")

    def __init__(self, model: Model, dtype: np.dtype, item_shape: tuple[int, ...]) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.buffer = np.zeros((1, *item_shape), dtype)
        # the buffer as a (28, 28) image of the input's dtype, to write pixels into
        self.pixels = self.buffer.reshape(MNIST_SIZE, MNIST_SIZE)


class DigitRecognizer:
    """Reads digits: single crops, batches of crops, or whole camera frames.

    Thread safety: every method may be called from several threads at once.
    With ``workers=1`` (the default) calls take turns on one interpreter; with
    ``workers=N`` there are N interpreters and up to N calls run in parallel.

    Example:
        >>> from edge_infer import DigitRecognizer
        >>> import numpy as np
        >>> with DigitRecognizer() as rec:
        ...     p = rec.classify(np.zeros((28, 28), np.uint8))
        >>> 0 <= p.digit <= 9
        True
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model | None = None,
        *,
        delegate: str | os.PathLike[str] = "auto",
        delegate_options: Mapping[str, Any] | None = None,
        num_threads: int | None = None,
        workers: int = 1,
    ) -> None:
        """Loads the model.

        Args:
            model: A ``.tflite`` path, an already loaded :class:`Model`, or None for
                the shipped int8 digit model.
            delegate: See :func:`edge_infer.load_model`.
            delegate_options: See :func:`edge_infer.load_model`.
            num_threads: Interpreter threads (per worker).
            workers: Interpreters to keep; > 1 lets threads run in parallel.

        Raises:
            ModelError: The model is not a 28x28x1 -> 10 classifier.
            ValueError, TypeError: Bad arguments.
        """
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if isinstance(model, Model):
            if workers != 1:
                raise ValueError("workers > 1 needs a model path (or None), not a loaded Model")
            models = [model]
        else:
            models = [
                load_model(model, delegate=delegate, delegate_options=delegate_options, num_threads=num_threads)
                for _ in range(workers)
            ]
        self.model = models[0]
        spec = self.model.input
        if (
            len(spec.shape) not in (3, 4)
            or spec.shape[1:3] != (MNIST_SIZE, MNIST_SIZE)
            or (len(spec.shape) == 4 and spec.shape[3] != 1)
        ):
            for m in models:
                m.close()
            raise ModelError(
                f"model {self.model.path.name} takes input {spec.shape}; DigitRecognizer needs "
                "(1, 28, 28, 1) or (1, 28, 28) — use load_model() for other models"
            )
        classes = int(np.prod(self.model.output.shape[1:]))
        manifest = self.model.manifest or {}
        reject = manifest.get("reject_class", 10 if classes == 11 else None)
        if classes not in (10, 11) or (classes == 11 and reject != 10):
            for m in models:
                m.close()
            raise ModelError(
                f"model {self.model.path.name} has output {self.model.output.shape}; DigitRecognizer "
                "needs 10 class scores (digits 0-9) or 11 (0-9 and 'not a digit' last)"
            )
        #: True when the model has an 11th "not a digit" class (index 10).
        self.has_reject_class = classes == 11
        self._classes = classes
        self._item_shape = spec.shape[1:]
        # uint8 pixel -> model input value, computed once (0..255 maps to [0, 1]).
        levels = np.arange(256, dtype=np.float32) / 255.0
        self._lut = spec.quantize(levels) if spec.quantized else levels.astype(spec.dtype)
        # The usual int8 input (scale 1/255, zero point -128) is the pixel minus 128:
        # a flip of the top bit, much cheaper than a table look-up.
        self._xor128 = spec.dtype == np.int8 and np.array_equal(
            self._lut.view(np.uint8), np.arange(256, dtype=np.uint8) ^ 128
        )
        # Raw output byte -> probability, for 8-bit outputs, as Python floats and as
        # float32 bytes: turning a few raw bytes into predictions then takes plain
        # Python, which (unlike numpy calls just after an invoke) runs cache-warm.
        out = self.model.output
        self._out_table: list[float] | None = None
        self._out_bytes: list[bytes] = []
        if out.dtype.itemsize == 1:
            table = out.dequantize(np.arange(256, dtype=np.uint8).view(out.dtype))
            self._out_table = table.tolist()
            self._out_bytes = [v.tobytes() for v in table]
        self._slots = [_Slot(m, self._lut.dtype, self._item_shape) for m in models]
        self._pool: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._pool.put(slot)

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        """Frees the interpreters. Safe to call more than once."""
        for slot in self._slots:
            slot.model.close()

    def __enter__(self) -> DigitRecognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- classification ----------------------------------------------------
    def _to_input(self, mnist: np.ndarray, out: np.ndarray) -> None:
        """uint8 pixels -> the model's input values, written into ``out`` (same shape)."""
        if self._xor128:
            np.bitwise_xor(mnist, np.uint8(128), out=out.view(np.uint8))
        else:
            np.take(self._lut, mnist, out=out)

    def _invoke(self, mnist: np.ndarray) -> np.ndarray:
        """A (28, 28) or (N, 28, 28) uint8 array -> the raw output, one invoke.

        A single digit goes through the slot's preallocated buffer: after an invoke
        every numpy call runs cache-cold, so the fewer the better.
        """
        one = len(self._slots) == 1
        slot = self._slots[0] if one else self._pool.get()  # one interpreter: no pool hop
        try:
            with slot.lock:
                if mnist.ndim == 2:
                    self._to_input(mnist, slot.pixels)
                    return slot.model.invoke(slot.buffer)
                x = np.empty((mnist.shape[0], *self._item_shape), self._lut.dtype)
                self._to_input(mnist, x.reshape(mnist.shape))
                return slot.model.invoke(x)
        finally:
            if not one:
                self._pool.put(slot)

    def _predictions(self, raw: np.ndarray, n: int) -> list[Prediction]:
        """The raw output of ``n`` crops -> predictions.

        For 8-bit outputs: one ``tobytes``, then table look-ups in plain Python,
        which runs cache-warm where numpy calls just after an invoke do not (5-10 us
        each). ``scores`` are read-only: they are backed by bytes.
        """
        c = self._classes
        table = self._out_table
        if table is None:
            probs = self.model.output.dequantize(raw).reshape(n, c)
            probs.flags.writeable = False
            flat = probs.ravel().tolist()
            rows = list(probs)
        else:
            codes = raw.tobytes()
            flat = list(map(table.__getitem__, codes))
            scores = np.frombuffer(b"".join(map(self._out_bytes.__getitem__, codes)), np.float32)
            rows = [scores] if n == 1 else list(scores.reshape(n, c))
        reject = self.has_reject_class
        out = []
        for k in range(n):
            values = flat[k * c : k * c + c]
            top = max(values[:10])
            r = values[10] if reject else 0.0
            out.append(_prediction(values.index(top), top, rows[k], r <= top, r))  # index: the first maximum, as argmax
        return out

    def classify(self, image: np.ndarray) -> Prediction:
        """Classifies one crop of a single digit.

        Args:
            image: A (28, 28) uint8 MNIST-style image (white on black), or any
                grayscale/BGR(A) crop of one digit, either polarity, any size.

        Returns:
            The prediction.

        Raises:
            TypeError, ValueError: ``image`` is not a usable image.
        """
        if not (type(image) is np.ndarray and image.shape == (MNIST_SIZE, MNIST_SIZE) and image.dtype == np.uint8):
            image = to_mnist(image)
        return self._predictions(self._invoke(image), 1)[0]

    def classify_batch(self, images: Sequence[np.ndarray] | np.ndarray) -> list[Prediction]:
        """Classifies many crops with one invoke where the model allows.

        Args:
            images: A sequence of crops (each as for :meth:`classify`), or an
                ``(N, 28, 28)`` uint8 array of MNIST-style digits.

        Returns:
            One prediction per crop, in order (an empty list for no crops).
        """
        batch: np.ndarray | None
        if isinstance(images, np.ndarray):
            if images.ndim == 3 and images.shape[1:] == (MNIST_SIZE, MNIST_SIZE) and images.dtype == np.uint8:
                batch = images
            elif images.ndim in (3, 4) and images.shape[0] >= 0:
                batch = np.stack([to_mnist(im) for im in images]) if len(images) else None
            else:
                raise ValueError(f"images has shape {images.shape}; pass (N, 28, 28) uint8 or a list of crops")
        elif isinstance(images, (list, tuple)):
            batch = np.stack([to_mnist(im) for im in images]) if images else None
        else:
            raise TypeError(f"images must be a list of arrays or an (N, 28, 28) array, not {type(images).__name__}")
        if batch is None or len(batch) == 0:
            return []
        return self._predictions(self._invoke(np.ascontiguousarray(batch)), len(batch))

    def top_k(self, image: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most likely digits for one crop, best first, as ``(digit, probability)``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10:
            raise ValueError(f"k must be an int from 1 to 10, got {k!r}")
        p = self.classify(image).scores[:10]
        order = np.argsort(-p, kind="stable")[:k]
        return [(int(i), float(p[i])) for i in order]

    # -- frames (camera pipeline) -----------------------------------------
    def detect(self, frame: np.ndarray, **options: Any) -> list[Detection]:
        """Finds and reads digits in a camera frame (needs OpenCV: ``pip install edge-infer[camera]``).

        See :func:`edge_infer.vision.detect` for the options.
        """
        from . import vision

        return vision.detect(self, frame, **options)

    def read_numbers(self, frame: np.ndarray, **options: Any) -> list[Any]:
        """Digits in a frame grouped into numbers, left to right (see :func:`edge_infer.vision.read_numbers`)."""
        from . import vision

        return vision.read_numbers(self, frame, **options)
