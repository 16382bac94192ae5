"""DigitRecognizer: the device-app API (classify crops, detect digits in frames)."""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ModelError
from .model import Model, load_model
from .preprocess import MNIST_SIZE, _mnist_ready, _paper_rows, to_mnist

__all__ = ["Detection", "DigitRecognizer", "Prediction"]

log = logging.getLogger(__name__)


class Prediction:
    """The answer for one digit crop (read-only; compared without ``scores``).

    Attributes:
        digit: The most likely digit, 0-9 (the best digit even when the crop
            looks like no digit at all: check ``is_digit``).
        score: Its probability.
        scores: All class probabilities (read-only float32 array): 10 for a
            digits-only model, 11 when the model has a "not a digit" class
            (the shipped model does; index 10). Built on first access.
        is_digit: False when the model's "not a digit" class wins (always True
            for a digits-only model).
        reject_score: The probability of "not a digit" (0.0 for a digits-only model).
    """

    # All fields in one tuple: a prediction is made per digit, just after an invoke,
    # and one slot write costs a fraction of five. The scores are a list of floats,
    # or (for 8-bit model outputs) the raw bytes as ranks and the rank -> probability
    # table, turned into floats only when read.
    __slots__ = ("_fields", "_scores")
    _fields: tuple[int, float, bool, float, list[float] | tuple[bytes, list[float]]]
    _scores: np.ndarray  # unset until scores is first read

    def __init__(
        self,
        digit: int,
        score: float,
        scores: Sequence[float] | np.ndarray,
        is_digit: bool = True,
        reject_score: float = 0.0,
    ) -> None:
        values = [float(v) for v in np.asarray(scores, np.float32).ravel()]
        _set(self, "_fields", (digit, score, is_digit, reject_score, values))

    @property
    def digit(self) -> int:
        return self._fields[0]

    @property
    def score(self) -> float:
        return self._fields[1]

    @property
    def is_digit(self) -> bool:
        return self._fields[2]

    @property
    def reject_score(self) -> float:
        return self._fields[3]

    @property
    def scores(self) -> np.ndarray:
        try:
            return self._scores
        except AttributeError:  # first read; two threads may both build it, harmlessly
            s = np.array(self._values(), np.float32)
            s.flags.writeable = False
            _set(self, "_scores", s)
            return s

    def _values(self) -> list[float]:
        v = self._fields[4]
        return list(map(v[1].__getitem__, v[0])) if isinstance(v, tuple) else v

    def __eq__(self, other: object) -> bool:
        return self._fields[:4] == other._fields[:4] if type(other) is Prediction else NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields[:4])

    def __repr__(self) -> str:
        d, s, ok, r = self._fields[:4]
        return f"Prediction(digit={d!r}, score={s!r}, is_digit={ok!r}, reject_score={r!r})"

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"Prediction is read-only: cannot assign to {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"Prediction is read-only: cannot delete {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        d, s, ok, r, _ = self._fields
        return (Prediction, (d, s, self._values(), ok, r))


_new = object.__new__
_set = object.__setattr__
_put_fields = Prediction.__dict__["_fields"].__set__  # the slot's own setter
_TOP_BIT = np.int8(-128)  # 0x80 as int8: XOR with it is "minus 128" for uint8 pixels read as int8
_FILL_MIN = 2  # batches from this size on are written straight into the input tensor


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
        # For 8-bit inputs, the same look-up as a bytes.translate table.
        self._translate = self._lut.view(np.uint8).tobytes() if self._lut.dtype.itemsize == 1 else None
        # The usual int8 input is the pixel minus 128, i.e. the pixel with its top bit
        # flipped: a batch then goes into the input tensor with one numpy XOR.
        self._flips = self._lut.dtype == np.int8 and self._translate == bytes(v ^ 0x80 for v in range(256))
        # Raw output byte -> probability, for 8-bit outputs, as Python floats: turning
        # a few raw bytes into predictions then takes plain Python, which (unlike
        # numpy calls just after an invoke) runs cache-warm.
        out = self.model.output
        self._out_table: list[float] | None = None
        # The same as a rank: raw byte -> the rank of its probability (int8 outputs:
        # the byte with its top bit flipped), and rank -> probability. Ranked bytes
        # give the best digit with bytes' own max and index, and the scores stay bytes
        # until read.
        self._out_rank: bytes | None = None
        self._by_rank: list[float] = []
        if out.dtype.itemsize == 1:
            values = out.dequantize(np.arange(256, dtype=np.uint8).view(out.dtype))
            self._out_table = values.tolist()
            order = np.argsort(values, kind="stable")
            if np.all(np.diff(values[order]) > 0):  # one probability per byte (scale > 0)
                rank = np.empty(256, np.uint8)
                rank[order] = np.arange(256, dtype=np.uint8)
                self._out_rank = rank.tobytes()
                self._by_rank = values[order].tolist()
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
                if n >= _FILL_MIN and self._flips:
                    flipped = mnist.reshape((n, *self._item_shape)).view(np.int8)
                    got = slot.model.invoke_filled(n, lambda view: np.bitwise_xor(flipped, _TOP_BIT, out=view))
                    if got is not None:
                        return got
                if slot.n != n:
                    slot.resize(n)
                if self._translate is not None:
                    slot.data[:] = (mnist.tobytes() if raw is None else raw).translate(self._translate)
                else:
                    np.take(self._lut, mnist, out=slot.buffer.reshape(mnist.shape))
                return slot.model.invoke(slot.buffer)
        finally:
            if not one:
                self._pool.put(slot)

    def _predictions(self, raw: np.ndarray, n: int) -> list[Prediction]:
        """The raw output of ``n`` crops -> predictions.

        For 8-bit outputs: one ``tobytes``, one ``translate`` to ranks, and plain
        Python on bytes. ``scores`` are turned into floats only when asked for.
        """
        c = self._classes
        new, put = _new, _put_fields
        out = []
        if self._out_rank is not None:  # ranks: max and index on bytes, scores kept as bytes
            b = raw.tobytes().translate(self._out_rank)
            tbl = self._by_rank
            if c == 11:
                for o in range(0, n * c, c):
                    row = b[o : o + 10]
                    t, rejected = max(row), b[o + 10]
                    p = new(Prediction)  # no __init__: the values are ready
                    put(p, (row.index(t), tbl[t], rejected <= t, tbl[rejected], (b[o : o + 11], tbl)))
                    out.append(p)
            else:
                for o in range(0, n * c, c):
                    row = b[o : o + 10]
                    t = max(row)
                    p = new(Prediction)
                    put(p, (row.index(t), tbl[t], True, 0.0, (row, tbl)))
                    out.append(p)
            return out
        table = self._out_table
        if table is None:
            flat = self.model.output.dequantize(raw).ravel().tolist()
        else:
            flat = list(map(table.__getitem__, raw.tobytes()))
        reject = self.has_reject_class
        for o in range(0, n * c, c):
            top = max(flat[o : o + 10])
            digit = flat.index(top, o, o + 10) - o  # index: the first maximum, as argmax
            r = flat[o + 10] if reject else 0.0
            p = new(Prediction)  # no __init__: the values are already floats
            put(p, (digit, top, r <= top, r, flat[o : o + c]))
            out.append(p)
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
        if not (
            type(image) is np.ndarray
            and image.shape == (MNIST_SIZE, MNIST_SIZE)
            and image.dtype == np.uint8
            and _mnist_ready(image)
        ):
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
                if len(images) == 0:
                    return []
                batch = np.ascontiguousarray(images)
                raw = batch.tobytes()
                redo = _paper_rows(raw)
                if not redo:
                    return self._predictions(self._invoke(batch, raw), len(batch))
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
