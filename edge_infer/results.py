"""The results edge_infer returns: frozen, comparable, with ``to_dict()`` for JSON.

- :class:`Prediction`: one crop classified.
- :class:`Detection`: a digit found in a frame.
- :class:`Number`: digits on a line read as one number, with its decimal point.
- :class:`DetectStats`: where one frame's time went.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["DetectStats", "Detection", "Number", "Prediction", "fill_prediction", "new_prediction"]


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

    def to_dict(self) -> dict[str, Any]:
        """``{"digit", "score", "is_digit", "reject_score"}`` (JSON-ready)."""
        d, s, ok, r = self._fields[:4]
        return {"digit": d, "score": round(s, 4), "is_digit": ok, "reject_score": round(r, 4)}


#: ``object.__new__``: a Prediction without ``__init__``, for a batch whose values are ready.
new_prediction = object.__new__
_set = object.__setattr__
#: The slot's own setter: ``fill_prediction(p, (digit, score, is_digit, reject_score, scores))``,
#: where scores are a list of floats or ``(rank bytes, rank -> probability list)``.
fill_prediction = Prediction.__dict__["_fields"].__set__


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

    def to_dict(self) -> dict[str, Any]:
        """``{"box": [x, y, w, h], "digit": d, "score": s}`` (JSON-ready)."""
        return {"box": list(self.box), "digit": self.digit, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Number:
    """Digits on one text line read left to right as a number.

    Attributes:
        box: ``(x, y, w, h)`` around all its digits, in frame pixels.
        value: The reading as a string, e.g. ``"042"`` or ``"247.00"`` (leading zeros and
            the decimal point kept).
        digits: The detections, left to right.
        scores: Each digit's probability, left to right.
    """

    box: tuple[int, int, int, int]
    value: str
    digits: tuple[Detection, ...]
    scores: tuple[float, ...]

    @property
    def number(self) -> float:
        """The reading as a float (``"247.00"`` -> 247.0)."""
        return float(self.value)

    def to_dict(self) -> dict[str, Any]:
        """The number as JSON-ready values, its digits included."""
        return {
            "box": list(self.box),
            "value": self.value,
            "number": self.number,
            "digits": [d.to_dict() for d in self.digits],
        }


@dataclass
class DetectStats:
    """Seconds one frame spent per stage of :func:`edge_infer.detect.detect`.

    Pass one as ``stats=`` to receive the figures; it is filled in place, so one
    object can be reused frame after frame (not shared between threads).

    Attributes:
        segment: Finding candidate marks (gray, polarity, threshold, components).
        prepare: Making the 28x28 crops and the rejection rules after the model.
        infer: The model (one batch per frame).
    """

    segment: float = 0.0
    prepare: float = 0.0
    infer: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """``{"segment": s, "prepare": s, "infer": s}``."""
        return {"segment": self.segment, "prepare": self.prepare, "infer": self.infer}
