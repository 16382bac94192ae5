"""Keras -> TFLite: float export, full-integer post-training quantisation, strict verifier.

The exported graph has a static input of ``[1, 28, 28, 1]``; it contains no
SHAPE / STRIDED_SLICE / PACK ops and no constant-shape RESHAPE, so a runtime can
still ``resize_tensor_input`` it to a batch of N.

:func:`verify_fully_integer` reads a ``.tflite`` back with the real LiteRT
interpreter and refuses anything that is not fully integer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.errors import ConvertError, NotFullyIntegerError

__all__ = [
    "ModelCheck",
    "OpInfo",
    "export_saved_model",
    "to_float_tflite",
    "to_int8_tflite",
    "verify_fully_integer",
]

log = logging.getLogger(__name__)

INPUT_SHAPE = (1, 28, 28, 1)

# Ops that never carry tensors of their own type (pure index / shape plumbing).
_SHAPE_CONSUMERS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "MEAN", "SUM", "PAD", "TRANSPOSE"}
_FLOAT_TYPES = {"float32", "float16", "float64", "bfloat16", "complex64", "complex128"}


def _concrete_function(model: Any) -> Any:
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec(INPUT_SHAPE, tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": model(image, training=False)}

    return serve.get_concrete_function()


def _converter(model: Any) -> Any:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    # Keras 3 variables are resources the TFLite calibrator cannot read: freeze them first.
    frozen = convert_variables_to_constants_v2(_concrete_function(model))
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen])


def to_float_tflite(model: Any) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (static batch 1)."""
    return bytes(_converter(model).convert())


def to_int8_tflite(
    model: Any,
    representative: np.ndarray,
    *,
    io: str = "int8",
) -> bytes:
    """Full-integer post-training quantisation.

    Args:
        model: the trained Keras model (float input in [0, 1]).
        representative: uint8 or float images ``(N, 28, 28)`` from the training
            split, used to calibrate activation ranges.
        io: ``"int8"`` (default) or ``"uint8"`` for the input and output tensors.

    Returns:
        The quantised flatbuffer.

    Raises:
        ConvertError: ``io`` is neither ``int8`` nor ``uint8``, or conversion fails.
    """
    import tensorflow as tf

    if io not in ("int8", "uint8"):
        raise ConvertError(f"--io must be int8 or uint8, not {io!r}")
    rep = np.asarray(representative)
    if rep.dtype == np.uint8:
        rep = rep.astype(np.float32) / 255.0
    rep = rep.astype(np.float32).reshape(-1, 28, 28, 1)
    if len(rep) == 0:
        raise ConvertError("the representative dataset is empty")

    def gen() -> Iterator[list[np.ndarray]]:
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8 if io == "int8" else tf.uint8
    conv.inference_output_type = tf.int8 if io == "int8" else tf.uint8
    try:
        return bytes(conv.convert())
    except Exception as e:  # the converter raises a variety of types
        raise ConvertError(f"int8 conversion failed: {type(e).__name__}: {e}") from e


def export_saved_model(model: Any, directory: str | os.PathLike[str]) -> None:
    """Write a TensorFlow SavedModel (signature ``serving_default``) atomically.

    The signature takes ``image`` float32 ``[None, 28, 28, 1]`` in [0, 1] and
    returns ``probs`` ``[None, 11]`` (``[None, 10]`` for a model without the
    "not a digit" class), as TensorFlow Serving expects.
    """
    import tensorflow as tf

    from convert.atomic import atomic_dir

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": model(image, training=False)}

    module.serve = serve
    with atomic_dir(directory) as tmp:
        tf.saved_model.save(module, os.fspath(tmp), signatures={"serving_default": serve})


# --------------------------------------------------------------------------- verifier


@dataclass(frozen=True)
class OpInfo:
    """One op of a TFLite graph: its builtin name and its tensors' dtypes."""

    index: int
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`verify_fully_integer` found.

    Attributes:
        ops: the ops in execution order.
        input_dtype, output_dtype: numpy dtype names of the I/O tensors.
        input_scale, input_zero_point, output_scale, output_zero_point: quantisation.
        input_shape, output_shape: static shapes.
        problems: empty for a fully integer model.
    """

    ops: tuple[OpInfo, ...]
    input_dtype: str
    output_dtype: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    problems: tuple[str, ...]

    @property
    def op_names(self) -> list[str]:
        return [op.name for op in self.ops]

    @property
    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.name] = counts.get(op.name, 0) + 1
        return counts


def _interpreter(model: bytes | str | os.PathLike[str]) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        if isinstance(model, bytes | bytearray):
            return Interpreter(model_content=bytes(model))
        return Interpreter(model_path=os.fspath(model))
    except (ValueError, RuntimeError) as e:
        raise ConvertError(f"cannot load the TFLite model: {e}") from e


def inspect_model(model: bytes | str | os.PathLike[str]) -> ModelCheck:
    """List ops and tensor types of a ``.tflite`` and collect every integer-rule breach.

    Rules: every activation and weight tensor int8 (uint8 allowed only for the
    model's input and output); int32 only for a bias (third input of a conv or
    fully connected op) or a shape / axis constant; no float tensor anywhere; no
    dynamic dimension (``-1`` in a shape signature); an output of 10 class
    scores (digits) or 11 (digits, then "not a digit").

    Args:
        model: flatbuffer bytes or a path.

    Returns:
        A :class:`ModelCheck`; ``problems`` is empty when the model is fully integer.

    Raises:
        ConvertError: the file cannot be loaded.
    """
    interp = _interpreter(model)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    ops_raw = interp._get_ops_details()
    problems: list[str] = []
    io_indices = {d["index"] for d in interp.get_input_details()} | {d["index"] for d in interp.get_output_details()}

    def dname(i: int) -> str:
        return np.dtype(tensors[i]["dtype"]).name if i in tensors else "?"

    int32_ok: set[int] = set()
    for op in ops_raw:
        name = op["op_name"]
        ins = [i for i in op["inputs"] if i >= 0]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV") and len(ins) >= 3:
            int32_ok.add(ins[2] if name != "TRANSPOSE_CONV" else ins[-1])
        if name in _SHAPE_CONSUMERS and len(ins) >= 2:
            int32_ok.update(ins[1:])
    ops: list[OpInfo] = []
    for op in ops_raw:
        name = op["op_name"]
        ins = [i for i in op["inputs"] if i >= 0]
        outs = [i for i in op["outputs"] if i >= 0]
        ops.append(OpInfo(op["index"], name, tuple(dname(i) for i in ins), tuple(dname(i) for i in outs)))
        floats = sorted({dname(i) for i in ins + outs} & _FLOAT_TYPES)
        if floats and name in ("DEQUANTIZE", "QUANTIZE"):
            problems.append(f"op {op['index']} {name} converts between {floats[0]} and integer")
        elif floats:
            problems.append(f"op {op['index']} {name} computes in {floats[0]}")
    for i, t in tensors.items():
        dt = dname(i)
        sig = t.get("shape_signature", t["shape"])
        if any(int(s) < 0 for s in sig):
            problems.append(f"tensor {i} {t['name']!r} has a dynamic shape {list(sig)}")
        if dt == "int8":
            continue
        if dt == "uint8" and i in io_indices:
            continue
        if dt == "int32" and i in int32_ok:
            continue
        problems.append(f"tensor {i} {t['name']!r} is {dt}")
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    classes = int(np.prod(out["shape"][1:]))
    if classes not in (10, 11):
        problems.append(f"output has {classes} class scores, expected 10 (digits) or 11 (digits, then 'not a digit')")
    return ModelCheck(
        ops=tuple(ops),
        input_dtype=np.dtype(inp["dtype"]).name,
        output_dtype=np.dtype(out["dtype"]).name,
        input_shape=tuple(int(s) for s in inp["shape"]),
        output_shape=tuple(int(s) for s in out["shape"]),
        input_scale=float(inp["quantization"][0]),
        input_zero_point=int(inp["quantization"][1]),
        output_scale=float(out["quantization"][0]),
        output_zero_point=int(out["quantization"][1]),
        problems=tuple(dict.fromkeys(problems)),
    )


def verify_fully_integer(model: bytes | str | os.PathLike[str]) -> ModelCheck:
    """Refuse a ``.tflite`` that is not fully integer (see :func:`inspect_model`).

    Returns:
        The :class:`ModelCheck` of a model that passed.

    Raises:
        NotFullyIntegerError: with every problem found, the first few in the message.
        ConvertError: the model cannot be loaded.
    """
    check = inspect_model(model)
    if check.problems:
        shown = "; ".join(check.problems[:3])
        more = f" (and {len(check.problems) - 3} more)" if len(check.problems) > 3 else ""
        raise NotFullyIntegerError(
            f"model is not fully integer: {shown}{more}; quantise it with a representative dataset "
            "and TFLITE_BUILTINS_INT8 (python -m convert quantize)",
            list(check.problems),
        )
    return check
