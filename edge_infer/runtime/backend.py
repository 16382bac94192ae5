"""The one place that imports a TFLite runtime.

Backends are tried in this order, lazily, the first time a model is loaded:

1. ``ai_edge_litert`` (LiteRT; numpy 2, Python 3.10+, x86-64 and arm64 wheels),
2. ``tflite_runtime`` (the older runtime; the only one with armv7l wheels),
3. ``tensorflow.lite`` (a last resort: it works, but costs seconds and hundreds of MB).

Set ``EDGE_INFER_BACKEND`` to one of those names to force a backend.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import BackendNotFoundError

__all__ = ["BACKENDS", "Backend", "get_backend"]

log = logging.getLogger(__name__)

#: Backend names in the order they are tried.
BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")

_INSTALL_HINT = (
    "install one with `pip install ai-edge-litert` (x86-64 or arm64, Python 3.10+) "
    "or `pip install tflite-runtime 'numpy<2'` (armv7l, Python 3.9-3.11)"
)


@dataclass(frozen=True)
class Backend:
    """A TFLite runtime that can build interpreters and load delegates.

    Attributes:
        name: The module name, one of :data:`BACKENDS`.
        version: The runtime's version string.
        interpreter_class: The runtime's ``Interpreter`` class.
        delegate_class: The runtime's ``Delegate`` class (external delegates).
        op_resolver_type: The runtime's ``OpResolverType`` enum, or None when the
            runtime is too old to choose (then XNNPACK cannot be switched off).
    """

    name: str
    version: str
    interpreter_class: Callable[..., Any]
    delegate_class: type
    op_resolver_type: Any = None

    def new_interpreter(
        self,
        model_content: bytes,
        *,
        delegates: list[Any] | None = None,
        num_threads: int | None = None,
        xnnpack: bool = True,
    ) -> Any:
        """Builds an interpreter for ``model_content`` (tensors not yet allocated)."""
        kwargs: dict[str, Any] = {
            "model_content": model_content,
            "experimental_delegates": delegates or None,
            "num_threads": num_threads,
        }
        if not xnnpack:
            if self.op_resolver_type is None:
                raise BackendNotFoundError(
                    f"backend {self.name} {self.version} cannot switch XNNPACK off; "
                    "use ai-edge-litert for delegate='cpu:noxnnpack'"
                )
            kwargs["experimental_op_resolver_type"] = self.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return self.interpreter_class(**kwargs)


_lock = threading.Lock()
_cache: dict[str, Backend] = {}


def _import(name: str) -> Backend:
    if name == "ai_edge_litert":
        mod = importlib.import_module("ai_edge_litert.interpreter")
        pkg = importlib.import_module("ai_edge_litert")
        version = getattr(pkg, "__version__", "") or _dist_version("ai-edge-litert")
    elif name == "tflite_runtime":
        mod = importlib.import_module("tflite_runtime.interpreter")
        pkg = importlib.import_module("tflite_runtime")
        version = getattr(pkg, "__version__", "") or _dist_version("tflite-runtime")
    elif name == "tensorflow":
        log.warning(
            "using tensorflow.lite as the TFLite runtime: it works, but "
            "importing TensorFlow costs seconds and hundreds of MB; %s",
            _INSTALL_HINT,
        )
        mod = importlib.import_module("tensorflow.lite.python.interpreter")
        version = _dist_version("tensorflow") or _dist_version("tensorflow-cpu")
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return Backend(
        name=name,
        version=version or "unknown",
        interpreter_class=mod.Interpreter,
        delegate_class=mod.Delegate,
        op_resolver_type=getattr(mod, "OpResolverType", None),
    )


def _dist_version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return ""


def get_backend(name: str | None = None) -> Backend:
    """Returns the TFLite runtime to use, importing it on first call.

    Args:
        name: A backend from :data:`BACKENDS`, or None for the first one that
            imports (or the one named by ``EDGE_INFER_BACKEND``).

    Returns:
        The backend; the same object on later calls.

    Raises:
        BackendNotFoundError: No runtime (or not the one named) can be imported.
        ValueError: ``name`` is not a known backend.
    """
    name = name or os.environ.get("EDGE_INFER_BACKEND") or None
    if name is not None and name not in BACKENDS:
        raise ValueError(
            f"unknown TFLite backend {name!r} (from argument or EDGE_INFER_BACKEND); "
            f"choose one of {', '.join(BACKENDS)}"
        )
    key = name or "*"
    with _lock:
        if key in _cache:
            return _cache[key]
        errors = []
        for candidate in (name,) if name else BACKENDS:
            try:
                backend = _import(candidate)
            except ImportError as e:
                errors.append(f"{candidate}: {e}")
                log.debug("TFLite backend %s not importable: %s", candidate, e)
                continue
            log.info("TFLite backend: %s %s", backend.name, backend.version)
            _cache[key] = backend
            return backend
    raise BackendNotFoundError("no TFLite runtime could be imported (" + "; ".join(errors) + "); " + _INSTALL_HINT)
