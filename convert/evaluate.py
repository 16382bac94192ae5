"""Scoring on the 10,000 MNIST test digits, and latency of every model measured in one run.

Float Keras, float TFLite and int8 TFLite are scored on the same digits. The int8
model is scored through ``edge_infer`` (``load_model(...).run``, the device's
interpreter and (de)quantisation), and ``DigitRecognizer.classify_batch`` is checked
to give the same digits. Latencies of every model, and of the plain baseline CNN,
are measured in the same process, interleaved round by round.

A model with the 11th class "not a digit" (index 10) is scored strictly: the
prediction is the argmax over all 11 classes, so a digit called "not a digit"
is an error. It is also scored on held-out negatives (letters, symbols, lines
drawn with fonts not used in training): the share of them rejected.

Every model is also scored on held-out printed digits (:func:`convert.printed.heldout_printed`:
DejaVu fonts, never used in training), strictly as well: a printed digit called
"not a digit" is an error; the share rejected is reported beside it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.data import MnistData

__all__ = ["Evaluation", "evaluate", "measure_latency"]

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """Scores of the models on the test split.

    Attributes:
        y_true: test labels.
        predictions: model name -> predicted class (N,), the argmax over all the
            model's classes (10 = "not a digit").
        digit_predictions: model name -> the best of 0-9 (N,), what
            ``Prediction.digit`` reports even for a rejected crop.
        negative_predictions: model name -> predicted class of each held-out negative.
        printed_true: labels of the held-out printed digits (None when not scored).
        printed_predictions: model name -> predicted class (argmax over all classes)
            of each held-out printed digit.
        classes: output classes of the evaluated model (10 or 11).
        latency_us: model name -> median microseconds per digit (batch 1).
        sizes: model name -> file size in bytes.
        batch_consistent: the int8 model gave identical outputs batched and one by one.
        recognizer_agreement: share of test digits on which ``DigitRecognizer``
            gave the same digit (and the same ``is_digit``, when it has one) as
            the strict scoring; None when it could not load the model.
    """

    y_true: np.ndarray
    predictions: dict[str, np.ndarray]
    digit_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    negative_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    printed_true: np.ndarray | None = None
    printed_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    classes: int = 10
    latency_us: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    batch_consistent: bool | None = None
    recognizer_agreement: float | None = None

    def accuracy(self, name: str) -> float:
        """Strict accuracy: a digit rejected as "not a digit" counts as an error."""
        return float((self.predictions[name] == self.y_true).mean())

    def digit_accuracy(self, name: str) -> float:
        """Accuracy of the best of 0-9, rejection ignored."""
        p = self.digit_predictions.get(name, self.predictions[name])
        return float((p == self.y_true).mean())

    def rejected(self, name: str) -> float:
        """Share of test digits called "not a digit" (0 for a 10-class model)."""
        return float((self.predictions[name] == 10).mean())

    def negatives_rejected(self, name: str) -> float | None:
        """Share of held-out negatives called "not a digit"; None when not scored."""
        p = self.negative_predictions.get(name)
        return None if p is None or not len(p) else float((p == 10).mean())

    def printed_accuracy(self, name: str) -> float | None:
        """Strict accuracy on the held-out printed digits ("not a digit" is an error); None when not scored."""
        p = self.printed_predictions.get(name)
        if p is None or self.printed_true is None or not len(p):
            return None
        return float((p == self.printed_true).mean())

    def printed_rejected(self, name: str) -> float | None:
        """Share of held-out printed digits called "not a digit"; None when not scored."""
        p = self.printed_predictions.get(name)
        return None if p is None or not len(p) else float((p == 10).mean())

    def printed_per_class(self, name: str) -> list[float | None]:
        """Strict accuracy on the held-out printed digits, per digit 0-9 (None for a digit not drawn)."""
        p, y = self.printed_predictions.get(name), self.printed_true
        if p is None or y is None:
            return [None] * 10
        return [float((p[y == c] == c).mean()) if (y == c).any() else None for c in range(10)]

    def manifest_accuracy(self) -> dict[str, Any]:
        """The ``accuracy`` block of the model manifest: the float and int8 figures."""
        acc: dict[str, Any] = {
            "dataset": "MNIST test (10,000)",
            "float": self.accuracy("float_keras"),
            "float_tflite": self.accuracy("float_tflite"),
            "int8": self.accuracy("int8_edge_infer"),
        }
        if self.classes == 11:
            acc["scoring"] = "strict: argmax over all 11 classes, a digit called 'not a digit' is an error"
            acc["int8_digits_rejected"] = self.rejected("int8_edge_infer")
            acc["float_digits_rejected"] = self.rejected("float_keras")
            acc["int8_digit_only"] = self.digit_accuracy("int8_edge_infer")
            acc["heldout_negatives"] = (
                f"{len(self.negative_predictions.get('int8_edge_infer', ()))} non-digits, DejaVu fonts"
            )
            acc["int8_negatives_rejected"] = self.negatives_rejected("int8_edge_infer")
            acc["float_negatives_rejected"] = self.negatives_rejected("float_keras")
        if self.printed_accuracy("int8_edge_infer") is not None:
            acc["heldout_printed"] = (
                f"{len(self.printed_predictions['int8_edge_infer'])} printed digits, DejaVu fonts (strict)"
            )
            acc["printed_float"] = self.printed_accuracy("float_keras")
            acc["printed_int8"] = self.printed_accuracy("int8_edge_infer")
            if self.classes == 11:
                acc["printed_float_rejected"] = self.printed_rejected("float_keras")
                acc["printed_int8_rejected"] = self.printed_rejected("int8_edge_infer")
        return acc

    def per_class(self, name: str) -> list[float]:
        p = self.predictions[name]
        return [float((p[self.y_true == c] == c).mean()) for c in range(10)]

    def confusion(self, name: str) -> np.ndarray:
        """Rows true class, columns predicted; with 11 classes row 10 is the held-out negatives."""
        n = self.classes
        cm = np.zeros((n, n), np.int64)
        np.add.at(cm, (self.y_true.astype(np.int64), self.predictions[name].astype(np.int64)), 1)
        neg = self.negative_predictions.get(name)
        if n == 11 and neg is not None:
            np.add.at(cm, (np.full(len(neg), 10), neg.astype(np.int64)), 1)
        return cm


def _tflite_predict(path: Path, x01: np.ndarray, *, batch: int = 1000) -> np.ndarray:
    """Raw LiteRT run of a float or quantised model on float images in [0, 1]: raw outputs (N, C)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zp = inp["quantization"]
    try:
        it.resize_tensor_input(inp["index"], [batch, 28, 28, 1])
        it.allocate_tensors()
    except (RuntimeError, ValueError):  # a graph with a constant-shape RESHAPE: batch of 1 only
        it = Interpreter(model_path=str(path))
        batch = 1
    preds = []
    current = None
    for s in range(0, len(x01), batch):
        xb = x01[s : s + batch]
        if current != len(xb):
            it.resize_tensor_input(inp["index"], [len(xb), 28, 28, 1])
            it.allocate_tensors()
            current = len(xb)
        if scale:
            info = np.iinfo(inp["dtype"])
            xb = np.clip(np.rint(xb / scale) + zp, info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], xb.astype(inp["dtype"]))
        it.invoke()
        preds.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(preds)


def _model_probs(path: Path, x01: np.ndarray, *, batch: int = 1000) -> np.ndarray:
    """Probabilities (N, C) from edge_infer's ``Model.run`` (the device's (de)quantisation)."""
    from edge_infer import load_model

    with load_model(path, delegate="cpu") as m:
        return np.concatenate([m.run(x01[s : s + batch]) for s in range(0, len(x01), batch)])


def _recognizer_agreement(path: Path, images: np.ndarray, probs: np.ndarray) -> float | None:
    """Share of crops on which ``DigitRecognizer`` agrees with the strict scoring."""
    from edge_infer import DigitRecognizer
    from edge_infer.errors import ModelError

    try:
        rec = DigitRecognizer(model=path, delegate="cpu")
    except ModelError as e:
        log.warning("DigitRecognizer cannot use %s (%s); scored through Model.run only", path.name, e)
        return None
    with rec:
        preds = rec.classify_batch(images)
    same = np.array([p.digit for p in preds]) == probs[:, :10].argmax(axis=1)
    if probs.shape[1] == 11 and all(hasattr(p, "is_digit") for p in preds):
        same &= np.array([p.is_digit for p in preds]) == (probs.argmax(axis=1) != 10)
    return float(same.mean())


def measure_latency(
    candidates: dict[str, Callable[[], Any]], *, rounds: int = 7, seconds_per_round: float = 0.25
) -> dict[str, float]:
    """Median per-call time in microseconds, candidates interleaved round by round.

    Interleaving means a burst of load from elsewhere on the machine hits every
    candidate alike, so the ratios hold even when absolute times wander.
    """
    for fn in candidates.values():  # warm up
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            n, t0 = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                el = time.perf_counter() - t0
                if el >= seconds_per_round and n >= 10:
                    break
            samples[name].append(el / n * 1e6)
    return {k: float(np.median(v)) for k, v in samples.items()}


def _raw_invoker(path: Path, num_threads: int) -> Callable[[], Any]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=num_threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.zeros(inp["shape"], inp["dtype"])

    def call() -> Any:
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"])

    return call


def evaluate(
    data: MnistData,
    *,
    keras_model: Any,
    float_tflite: Path,
    int8_tflite: Path,
    baseline_int8: Path | None = None,
    negatives: np.ndarray | None = None,
    printed: tuple[np.ndarray, np.ndarray] | None = None,
    num_threads: int = 1,
    latency_rounds: int = 7,
) -> Evaluation:
    """Score every model on all test digits and time them in one run.

    Args:
        data: MNIST (only the test split is used).
        keras_model: the trained float model.
        float_tflite, int8_tflite: the converted models.
        baseline_int8: the plain baseline CNN, int8, for the latency comparison.
        negatives: held-out non-digit crops, uint8 ``(M, 28, 28)``, scored when
            the model has the "not a digit" class.
        printed: held-out printed digits and their labels, uint8 ``(P, 28, 28)``
            and ``(P,)``, scored strictly.
        num_threads: interpreter threads for every TFLite latency measurement.
        latency_rounds: interleaved rounds of timing.
    """
    import tensorflow as tf

    from edge_infer import load_model

    x01 = (data.x_test.astype(np.float32) / 255.0)[..., None]
    classes = int(keras_model.output_shape[-1])
    if classes == 11 and negatives is not None and len(negatives):
        xn = (np.asarray(negatives, np.float32) / 255.0)[..., None]
    else:
        xn = x01[:0]
    xp = x01[:0] if printed is None else (np.asarray(printed[0], np.float32) / 255.0)[..., None]
    both = np.concatenate([x01, xn, xp])
    n, m = len(x01), len(x01) + len(xn)
    raw: dict[str, np.ndarray] = {}
    log.info(
        "scoring float Keras on %d test digits, %d held-out negatives and %d held-out printed digits",
        n,
        len(xn),
        len(xp),
    )
    raw["float_keras"] = keras_model.predict(both, batch_size=500, verbose=0)
    log.info("scoring float TFLite")
    raw["float_tflite"] = _tflite_predict(float_tflite, both)
    log.info("scoring int8 TFLite through edge_infer")
    raw["int8_edge_infer"] = _model_probs(int8_tflite, both)
    ev = Evaluation(data.y_test.copy(), {}, classes=classes)
    if printed is not None:
        ev.printed_true = np.asarray(printed[1]).astype(np.int64)
    for name, out in raw.items():
        ev.predictions[name] = out[:n].argmax(axis=1)
        ev.digit_predictions[name] = out[:n, :10].argmax(axis=1)
        if len(xn):
            ev.negative_predictions[name] = out[n:m].argmax(axis=1)
        if len(xp):
            ev.printed_predictions[name] = out[m:].argmax(axis=1)
    if baseline_int8 is not None:
        ev.predictions["baseline_int8"] = _tflite_predict(baseline_int8, x01).argmax(axis=1)
    ev.recognizer_agreement = _recognizer_agreement(int8_tflite, data.x_test, raw["int8_edge_infer"][:n])

    # Batched and one-by-one must agree exactly: the runtime resizes the batch of crops.
    with load_model(int8_tflite, delegate="cpu") as m:
        some = x01[:64]
        batched = m.run(some)
        single = np.concatenate([m.run(some[i : i + 1]) for i in range(len(some))])
        ev.batch_consistent = bool(np.array_equal(batched, single)) and m.batch_resizable is True

    log.info("timing (batch 1, %d thread(s), %d interleaved rounds)", num_threads, latency_rounds)
    keras_fn = tf.function(lambda t: keras_model(t, training=False))
    one = tf.constant(x01[:1])
    cands: dict[str, Callable[[], Any]] = {
        "float_keras": lambda: keras_fn(one).numpy(),
        "float_tflite": _raw_invoker(float_tflite, num_threads),
        "int8_tflite": _raw_invoker(int8_tflite, num_threads),
    }
    ei = load_model(int8_tflite, delegate="cpu", num_threads=num_threads)
    x1 = x01[:1]
    cands["int8_edge_infer"] = lambda: ei.run(x1)
    if baseline_int8 is not None:
        cands["baseline_int8"] = _raw_invoker(baseline_int8, num_threads)
    ev.latency_us = measure_latency(cands, rounds=latency_rounds)
    ei.close()
    ev.sizes = {
        "float_tflite": float_tflite.stat().st_size,
        "int8_tflite": int8_tflite.stat().st_size,
    }
    if baseline_int8 is not None:
        ev.sizes["baseline_int8"] = baseline_int8.stat().st_size
    return ev
