"""DigitRecognizer: the device-app API (classify crops, detect digits in frames).

It owns the interpreters (one per worker) and the model's :class:`~edge_infer.codec.Codec`;
finding digits in frames is :mod:`edge_infer.detect`, which it calls with itself as
the batch classifier.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Mapping, Sequence

import numpy as np

from .codec import Codec
from .detect import DEFAULT_MIN_SCORE, Roi, detect, read_numbers
from .errors import ModelError
from .image.layout import MNIST_SIZE, mnist_ready, paper_rows
from .image.preprocess import to_mnist
from .results import Detection, DetectStats, Number, Prediction
from .runtime import Model, load_model

__all__ = ["DigitRecognizer"]

log = logging.getLogger(__name__)

_TOP_BIT = np.int8(-128)  # 0x80 as int8: XOR with it is "minus 128" for uint8 pixels read as int8
_FILL_MIN = 2  # batches from this size on are written straight into the input tensor


class _Slot:
    """One interpreter, its lock, and its input buffer (used under the lock).

    The buffer holds the last batch size's input; its memory is a bytearray, so
    8-bit pixels go in with one ``bytes.translate`` (see DigitRecognizer._invoke).
    """

    __slots__ = ("model", "lock", "dtype", "item_shape", "n", "data", "buffer")

    def __init__(self, model: Model, dtype: np.dtype, item_shape: tuple[int, ...]) -> None:
        self.model = model
        self.lock = threading.Lock()
        self.dtype = dtype
        self.item_shape = item_shape
        self.resize(1)

    def resize(self, n: int) -> None:
        self.n = n
        self.data = bytearray(n * MNIST_SIZE * MNIST_SIZE * self.dtype.itemsize)
        self.buffer = np.frombuffer(self.data, self.dtype).reshape((n, *self.item_shape))


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
            self._owns_models = False  # the caller loaded it and closes it
        else:
            self._owns_models = True
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
            if self._owns_models:
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
            if self._owns_models:
                for m in models:
                    m.close()
            raise ModelError(
                f"model {self.model.path.name} has output {self.model.output.shape}; DigitRecognizer "
                "needs 10 class scores (digits 0-9) or 11 (0-9 and 'not a digit' last)"
            )
        #: True when the model has an 11th "not a digit" class (index 10).
        self.has_reject_class = classes == 11
        self._item_shape = spec.shape[1:]
        self._codec = Codec(spec, self.model.output, classes)
        self._slots = [_Slot(m, self._codec.input_dtype, self._item_shape) for m in models]
        self._pool: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._pool.put(slot)

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        """Frees the interpreters this recogniser loaded. Safe to call more than once.

        A :class:`Model` passed in as ``model=`` stays open: its owner closes it.
        """
        if self._owns_models:
            for slot in self._slots:
                slot.model.close()

    def __enter__(self) -> DigitRecognizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- classification ----------------------------------------------------
    def _invoke(self, mnist: np.ndarray, raw: bytes | None = None) -> np.ndarray:
        """A (28, 28) or (N, 28, 28) uint8 array -> the raw output, one invoke.

        A batch for the usual int8 input (the pixel minus 128) is written into the
        interpreter's input tensor by one numpy XOR (:meth:`Model.invoke_filled`): no
        copy of its own, no ``set_tensor`` copy. One digit, and other 8-bit inputs,
        go into the slot's buffer with ``bytes.translate``: for 784 bytes that is
        cheaper than any numpy call just after an invoke, which runs cache-cold.
        ``raw`` is ``mnist.tobytes()`` when the caller has it already.
        """
        n = 1 if mnist.ndim == 2 else mnist.shape[0]
        one = len(self._slots) == 1
        slot = self._slots[0] if one else self._pool.get()  # one interpreter: no pool hop
        try:
            with slot.lock:
                if n >= _FILL_MIN and self._codec.flips:
                    flipped = mnist.reshape((n, *self._item_shape)).view(np.int8)
                    got = slot.model.invoke_filled(n, lambda view: np.bitwise_xor(flipped, _TOP_BIT, out=view))
                    if got is not None:
                        return got
                if slot.n != n:
                    slot.resize(n)
                if self._codec.translate is not None:
                    slot.data[:] = (mnist.tobytes() if raw is None else raw).translate(self._codec.translate)
                else:
                    np.take(self._codec.lut, mnist, out=slot.buffer.reshape(mnist.shape))
                return slot.model.invoke(slot.buffer)
        finally:
            if not one:
                self._pool.put(slot)

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
        if not (
            type(image) is np.ndarray
            and image.shape == (MNIST_SIZE, MNIST_SIZE)
            and image.dtype == np.uint8
            and mnist_ready(image)
        ):
            image = to_mnist(image)
        return self._codec.predictions(self._invoke(image), 1)[0]

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
                if len(images) == 0:
                    return []
                batch = np.ascontiguousarray(images)
                raw = batch.tobytes()
                redo = paper_rows(raw)
                if not redo:
                    return self._codec.predictions(self._invoke(batch, raw), len(batch))
                batch = batch.copy()  # dark digits on white among them: those are normalised first
                for i in redo:
                    batch[i] = to_mnist(batch[i])
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
        return self._codec.predictions(self._invoke(np.ascontiguousarray(batch)), len(batch))

    def top_k(self, image: np.ndarray, k: int = 3) -> list[tuple[int, float]]:
        """The ``k`` most likely digits for one crop, best first, as ``(digit, probability)``."""
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10:
            raise ValueError(f"k must be an int from 1 to 10, got {k!r}")
        p = self.classify(image).scores[:10]
        order = np.argsort(-p, kind="stable")[:k]
        return [(int(i), float(p[i])) for i in order]

    # -- frames (camera pipeline) -----------------------------------------
    def detect(
        self,
        frame: np.ndarray,
        *,
        min_height: int = 16,
        max_height: int | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        polarity: str = "auto",
        max_side: int = 1280,
        min_contrast: float = 0.12,
        fast: bool = False,
        roi: Roi | None = None,
        color: str = "bgr",
        stats: DetectStats | None = None,
    ) -> list[Detection]:
        """Finds and reads digits in a camera frame (needs OpenCV: ``pip install edge-infer[camera]``).

        See :func:`edge_infer.detect.detect` for the options.
        """
        return detect(
            self,
            frame,
            min_height=min_height,
            max_height=max_height,
            min_score=min_score,
            polarity=polarity,
            max_side=max_side,
            min_contrast=min_contrast,
            fast=fast,
            roi=roi,
            color=color,
            stats=stats,
        )

    def read_numbers(
        self,
        frame: np.ndarray,
        *,
        max_gap: float = 0.8,
        min_height: int = 16,
        max_height: int | None = None,
        min_score: float = DEFAULT_MIN_SCORE,
        polarity: str = "auto",
        max_side: int = 1280,
        min_contrast: float = 0.12,
        fast: bool = False,
        roi: Roi | None = None,
        color: str = "bgr",
        stats: DetectStats | None = None,
    ) -> list[Number]:
        """Digits in a frame grouped into numbers, in reading order (see :func:`edge_infer.detect.read_numbers`)."""
        return read_numbers(
            self,
            frame,
            max_gap=max_gap,
            min_height=min_height,
            max_height=max_height,
            min_score=min_score,
            polarity=polarity,
            max_side=max_side,
            min_contrast=min_contrast,
            fast=fast,
            roi=roi,
            color=color,
            stats=stats,
        )
