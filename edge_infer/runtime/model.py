"""Loading TFLite models: integrity checks, delegate choice, tensor specs, quantised I/O."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import EdgeInferError, ModelError, ModelNotFoundError
from .backend import Backend, get_backend
from .delegates import load_delegate_for, parse_delegate, plan_auto
from .modelfile import (
    EDGETPU_OP,
    manifest_path,
    read_checked,
    read_manifest,
    resolve_path,
    shipped_model_path,
)

__all__ = [
    "Model",
    "ModelNotFoundError",
    "TensorSpec",
    "load_model",
    "manifest_path",
    "read_manifest",
    "shipped_model_path",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, read once at load.

    Attributes:
        name: Tensor name in the model.
        index: Tensor index for the interpreter.
        shape: Shape with the batch dimension as loaded (usually 1).
        dtype: numpy dtype of the tensor.
        scale: Quantisation scale (0.0 when not quantised).
        zero_point: Quantisation zero point.
    """

    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @functools.cached_property
    def quantized(self) -> bool:
        """True for an integer tensor with a quantisation scale."""
        return self.scale != 0.0 and self.dtype.kind in "iu"

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values -> this tensor's integer dtype (round, then saturate).

        >>> spec = TensorSpec("x", 0, (1, 2), np.dtype(np.int8), 1 / 255, -128)
        >>> spec.quantize(np.array([0.0, 1.0, 2.0])).tolist()
        [-128, 127, 127]
        """
        if not self.quantized:
            return np.asarray(x, dtype=self.dtype)
        info = np.iinfo(self.dtype)
        q = np.divide(x, np.float32(self.scale), dtype=np.float32)  # one temporary, reused
        np.rint(q, out=q)
        q += np.float32(self.zero_point)
        np.clip(q, info.min, info.max, out=q)
        return q.astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's values -> float32 (widened before the zero point is taken off).

        >>> spec = TensorSpec("y", 0, (1, 2), np.dtype(np.int8), 1 / 256, -128)
        >>> spec.dequantize(np.array([-128, 127], dtype=np.int8)).tolist()
        [0.0, 0.99609375]
        """
        if not self.quantized:
            return np.asarray(q, dtype=np.float32)
        return (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)


def _spec(detail: Mapping[str, Any]) -> TensorSpec:
    scale, zero = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero),
    )


class Model:
    """A loaded TFLite model with its interpreter.

    Build it with :func:`load_model`. ``run`` is serialised by a lock, so one
    Model may be shared between threads (calls then take turns); for parallel
    inference, load one Model per thread (see ``DigitRecognizer(workers=N)``).

    Attributes:
        path: The model file actually loaded (the Edge TPU twin when one was chosen).
        backend: Name of the TFLite runtime in use.
        delegate: The delegate in use: ``"cpu"``, ``"cpu:noxnnpack"``, ``"edgetpu"``,
            ``"gpu"`` or the external library's path.
        input: Spec of the (single) input tensor.
        output: Spec of the (first) output tensor.
        outputs: Specs of all output tensors.
        manifest: The model's manifest, or None.
    """

    def __init__(
        self,
        path: Path,
        content: bytes,
        backend: Backend,
        interpreter: Any,
        delegate_name: str,
        delegate_obj: Any,
        manifest: dict[str, Any] | None,
    ) -> None:
        self.path = path
        self.backend = backend.name
        self.backend_version = backend.version
        self.delegate = delegate_name
        self.manifest = manifest
        self._content = content  # the interpreter reads from this buffer
        self._interpreter = interpreter
        self._delegate_obj = delegate_obj
        self._lock = threading.Lock()
        inputs = interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"model {path} has {len(inputs)} inputs; edge_infer runs single-input models")
        self.input = _spec(inputs[0])
        self.outputs = tuple(_spec(d) for d in interpreter.get_output_details())
        if not self.outputs:
            raise ModelError(f"model {path} has no outputs")
        self.output = self.outputs[0]
        self._batch = self.input.shape[0] if self.input.shape else 1
        self._resizable: bool | None = None if delegate_name in ("cpu", "cpu:noxnnpack") else False
        self.sha256 = hashlib.sha256(content).hexdigest()

    # -- lifecycle ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._interpreter is None

    def close(self) -> None:
        """Frees the interpreter and delegate. Safe to call more than once."""
        with self._lock:
            self._interpreter = None
            self._delegate_obj = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"input={self.input.shape} {self.input.dtype}"
        return f"Model({str(self.path)!r}, backend={self.backend!r}, delegate={self.delegate!r}, {state})"

    # -- inference ---------------------------------------------------------
    @property
    def batch_resizable(self) -> bool | None:
        """Whether the batch dimension can be resized (None: not tried yet)."""
        return self._resizable

    def _interp(self) -> Any:
        interp = self._interpreter
        if interp is None:
            raise EdgeInferError(f"model {self.path.name} is closed; load it again")
        return interp

    def _set_batch(self, interp: Any, n: int) -> bool:
        if n == self._batch:
            return True
        if self._resizable is False:
            return False
        try:
            interp.resize_tensor_input(self.input.index, (n, *self.input.shape[1:]), strict=False)
            interp.allocate_tensors()
        except (RuntimeError, ValueError) as e:
            log.info("model %s cannot resize its batch to %d (%s); looping instead", self.path.name, n, e)
            self._resizable = False
            interp.resize_tensor_input(self.input.index, (self._batch, *self.input.shape[1:]), strict=False)
            interp.allocate_tensors()
            return False
        self._batch = n
        self._resizable = True
        return True

    def _run_failed(self, e: RuntimeError) -> EdgeInferError:
        return EdgeInferError(f"model {self.path.name} failed to run on {self.delegate}: {str(e).strip()}")

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """Runs raw input of the model's dtype; returns the raw first output.

        ``x`` has the input's shape, with any batch size N (the batch is resized,
        or the model is run N times when it cannot be).

        Args:
            x: Array of ``self.input.dtype`` shaped ``(N, *self.input.shape[1:])``.

        Returns:
            A new array ``(N, *self.output.shape[1:])`` of ``self.output.dtype``.
        """
        with self._lock:
            interp = self._interp()
            n = x.shape[0]
            try:
                if self._set_batch(interp, n):
                    interp.set_tensor(self.input.index, x)
                    interp.invoke()
                    return interp.get_tensor(self.output.index)
                if self._batch != 1:
                    self._set_batch(interp, 1)
                out = []
                for i in range(n):
                    interp.set_tensor(self.input.index, x[i : i + 1])
                    interp.invoke()
                    out.append(interp.get_tensor(self.output.index))
                return np.concatenate(out, axis=0)
            except RuntimeError as e:
                raise self._run_failed(e) from e

    def invoke_filled(self, n: int, fill: Callable[[np.ndarray], object]) -> np.ndarray | None:
        """Runs a batch of ``n`` that ``fill`` writes straight into the input tensor.

        One copy fewer than :meth:`invoke`. ``fill`` gets a view of the input tensor,
        shaped ``(n, *input.shape[1:])``, and must not keep it (the interpreter will
        not run while a view of its memory is alive).

        Returns:
            The raw first output, as :meth:`invoke`; None, having run nothing, when
            the batch cannot be resized to ``n`` (use :meth:`invoke` then).
        """
        with self._lock:
            interp = self._interp()
            try:
                if not self._set_batch(interp, n):
                    return None
                view = interp.tensor(self.input.index)()
                try:
                    fill(view)
                finally:
                    del view
                interp.invoke()
                return interp.get_tensor(self.output.index)
            except RuntimeError as e:
                raise self._run_failed(e) from e

    def run(self, x: np.ndarray) -> np.ndarray:
        """Runs the model on float or raw input and returns float32 outputs.

        Float input is quantised with the input's scale and zero point; input of
        the model's own dtype is passed as is. A missing batch dimension is added.
        Integer outputs are dequantised (widened first, so nothing overflows).

        Args:
            x: ``(N, *input.shape[1:])`` or ``input.shape[1:]``.

        Returns:
            float32 array ``(N, *output.shape[1:])`` (N=1 when no batch was given).

        Raises:
            TypeError: ``x`` is not a numeric numpy array.
            ValueError: Wrong shape, empty, or NaN/inf values.
        """
        x = self._check_input(x)
        return self.output.dequantize(self.invoke(x))

    def _check_input(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"model input must be a numpy array, not {type(x).__name__}")
        item = self.input.shape[1:]
        if x.shape == item:
            x = x[None]
        if x.ndim != len(self.input.shape) or x.shape[1:] != item or x.shape[0] == 0:
            raise ValueError(
                f"model input has shape {x.shape}; expected (N, {', '.join(map(str, item))}) "
                f"or ({', '.join(map(str, item))}) with N >= 1"
            )
        if x.dtype == self.input.dtype:
            return np.ascontiguousarray(x)
        if x.dtype.kind == "f":
            # a sum is finite when every value is (one pass); only then look closer
            if not np.isfinite(x.sum(dtype=np.float64)) and not np.isfinite(x).all():
                raise ValueError("model input contains NaN or infinity; clean the input first")
            return np.ascontiguousarray(self.input.quantize(x))
        raise TypeError(
            f"model input dtype {x.dtype} is neither float nor the model's {self.input.dtype}; "
            "pass floats in the model's range (e.g. [0, 1]) or raw quantised values"
        )

    def ops(self) -> list[str]:
        """Op names in execution order (an empty list if the runtime cannot say)."""
        interp = self._interp()
        get = getattr(interp, "_get_ops_details", None)
        if get is None:
            return []
        return [str(d.get("op_name", "?")) for d in get()]


def _check_threads(num_threads: Any) -> int | None:
    if num_threads is None:
        return None
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be an int >= 1 or None, not {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1 (or None for the runtime's default), got {num_threads}")
    return int(num_threads)


def _build(
    path: Path,
    content: bytes,
    backend: Backend,
    delegate_name: str,
    delegate_obj: Any,
    num_threads: int | None,
    manifest: dict[str, Any] | None,
) -> Model:
    try:
        interp = backend.new_interpreter(
            content,
            delegates=[delegate_obj] if delegate_obj is not None else None,
            num_threads=num_threads,
            xnnpack=delegate_name != "cpu:noxnnpack",
        )
        interp.allocate_tensors()
        # One invoke now: a model whose graph is damaged fails here, at load, not on
        # the first frame; and the slow first inference (on an Edge TPU, the upload of
        # the model to the device) is paid before anything is timed.
        inp = interp.get_input_details()
        for d in inp:
            interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
    except (ValueError, RuntimeError) as e:
        raise ModelError(
            f"model {path} could not be loaded by {backend.name} {backend.version} with "
            f"delegate {delegate_name!r}: {str(e).strip().splitlines()[0] if str(e).strip() else e!r}"
        ) from e
    return Model(path, content, backend, interp, delegate_name, delegate_obj, manifest)


def load_model(
    path: str | os.PathLike[str] | None = None,
    *,
    delegate: str | os.PathLike[str] = "auto",
    delegate_options: Mapping[str, Any] | None = None,
    num_threads: int | None = None,
    verify: bool = True,
) -> Model:
    """Loads a TFLite model and picks its delegate.

    Args:
        path: A ``.tflite`` file; None loads the shipped int8 digit model.
        delegate: ``"auto"``, ``"cpu"``, ``"cpu:noxnnpack"``, ``"edgetpu"``,
            ``"edgetpu:usb[:N]"``, ``"edgetpu:pci[:N]"``, ``"gpu"`` or the path of an
            external delegate library (see :mod:`edge_infer.runtime.delegates`).
        delegate_options: Options for the delegate library (strings, numbers, bools).
        num_threads: CPU threads for the interpreter; None for the runtime's default.
        verify: Check the file against the sha256 in its manifest (``<stem>.json``
            beside it) when there is one.

    Returns:
        The loaded model; ``model.delegate`` says which delegate ``"auto"`` chose.

    Raises:
        ModelNotFoundError: The file does not exist (also a ``FileNotFoundError``).
        ModelError: Not a TFLite model, damaged, or the runtime refused it.
        DelegateUnavailableError: An explicitly requested delegate cannot be loaded,
            or the model only runs on an Edge TPU and none answered.
        BackendNotFoundError: No TFLite runtime is installed.
        TypeError, ValueError: Bad argument types or values.
    """
    p = resolve_path(path)
    spec = parse_delegate(delegate)
    num_threads = _check_threads(num_threads)
    if delegate_options is not None and spec.kind in ("auto", "cpu", "cpu:noxnnpack"):
        raise ValueError(
            f"delegate_options were given but delegate={spec.text!r} loads no delegate library; "
            "name the delegate they are for (e.g. 'edgetpu' or a library path)"
        )
    if not isinstance(verify, bool):
        raise TypeError(f"verify must be True or False, not {type(verify).__name__}")
    content = read_checked(p, verify=verify)
    manifest = read_manifest(p)
    backend = get_backend()

    if spec.kind in ("cpu", "cpu:noxnnpack"):
        if EDGETPU_OP in content:
            raise ModelError(
                f"model {p.name} is compiled for the Edge TPU and cannot run on the CPU; "
                "load the uncompiled model (without the _edgetpu suffix) or use delegate='edgetpu'"
            )
        return _build(p, content, backend, spec.kind, None, num_threads, manifest)
    if spec.kind != "auto":
        obj = load_delegate_for(spec, delegate_options, backend)
        name = spec.kind if spec.kind in ("edgetpu", "gpu") else (spec.library or spec.text)
        return _build(p, content, backend, name, obj, num_threads, manifest)
    plan = plan_auto(p, content, backend, verify=verify)
    return _build(
        plan.path,
        plan.content,
        backend,
        plan.delegate,
        plan.delegate_obj,
        num_threads,
        read_manifest(plan.path) or manifest,
    )
