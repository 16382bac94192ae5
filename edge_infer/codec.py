"""Pixels into a digit model's input tensor, its raw output into :class:`Prediction` objects.

Built once per model from its tensor specs (:class:`~edge_infer.runtime.TensorSpec`):
look-up tables that make the per-digit work plain byte operations, which run
cache-warm right after an invoke where numpy calls do not.
"""

from __future__ import annotations

import numpy as np

from .results import Prediction, fill_prediction, new_prediction
from .runtime import TensorSpec

__all__ = ["Codec"]


class Codec:
    """Input and output conversions for a 28x28 -> 10 or 11 class digit model.

    Attributes:
        lut: uint8 pixel -> model input value (0..255 maps to [0, 1], quantised).
        input_dtype: The input tensor's dtype.
        translate: For 8-bit inputs, ``lut`` as a ``bytes.translate`` table, else None.
        flips: True for the usual int8 input, pixel - 128 = pixel XOR 0x80: a batch
            then goes into the input tensor with one numpy XOR.
        classes: 10 (digits) or 11 (digits and "not a digit" last).

    Thread-safe: read-only after construction.
    """

    def __init__(self, input_spec: TensorSpec, output_spec: TensorSpec, classes: int) -> None:
        levels = np.arange(256, dtype=np.float32) / 255.0
        self.lut = input_spec.quantize(levels) if input_spec.quantized else levels.astype(input_spec.dtype)
        self.input_dtype = self.lut.dtype
        self.translate = self.lut.view(np.uint8).tobytes() if self.lut.dtype.itemsize == 1 else None
        self.flips = self.lut.dtype == np.int8 and self.translate == bytes(v ^ 0x80 for v in range(256))
        self.classes = classes
        self.output = output_spec
        # Raw output byte -> probability, for 8-bit outputs, as Python floats; and the
        # same as a rank (raw byte -> rank of its probability, rank -> probability):
        # ranked bytes give the best digit with bytes' own max and index, and the
        # scores stay bytes until read.
        self.out_table: list[float] | None = None
        self.out_rank: bytes | None = None
        self.by_rank: list[float] = []
        if output_spec.dtype.itemsize == 1:
            values = output_spec.dequantize(np.arange(256, dtype=np.uint8).view(output_spec.dtype))
            self.out_table = values.tolist()
            order = np.argsort(values, kind="stable")
            if np.all(np.diff(values[order]) > 0):  # one probability per byte (scale > 0)
                rank = np.empty(256, np.uint8)
                rank[order] = np.arange(256, dtype=np.uint8)
                self.out_rank = rank.tobytes()
                self.by_rank = values[order].tolist()

    def predictions(self, raw: np.ndarray, n: int) -> list[Prediction]:
        """The raw output of ``n`` crops -> predictions.

        For 8-bit outputs: one ``tobytes``, one ``translate`` to ranks, and plain
        Python on bytes. ``scores`` are turned into floats only when asked for.
        """
        c = self.classes
        new, put = new_prediction, fill_prediction
        out = []
        if self.out_rank is not None:  # ranks: max and index on bytes, scores kept as bytes
            b = raw.tobytes().translate(self.out_rank)
            tbl = self.by_rank
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
        table = self.out_table
        if table is None:
            flat = self.output.dequantize(raw).ravel().tolist()
        else:
            flat = list(map(table.__getitem__, raw.tobytes()))
        reject = c == 11
        for o in range(0, n * c, c):
            top = max(flat[o : o + 10])
            digit = flat.index(top, o, o + 10) - o  # index: the first maximum, as argmax
            r = flat[o + 10] if reject else 0.0
            p = new(Prediction)  # no __init__: the values are already floats
            put(p, (digit, top, r <= top, r, flat[o : o + c]))
            out.append(p)
        return out
