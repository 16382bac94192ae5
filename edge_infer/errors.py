"""The exceptions edge_infer raises.

Every error is an :class:`EdgeInferError`, and also the built-in type a caller
would expect (``ImportError``, ``RuntimeError``, ``ValueError``), so both
``except EdgeInferError`` and ``except ValueError`` work.
"""

from __future__ import annotations

__all__ = [
    "BackendNotFoundError",
    "DelegateUnavailableError",
    "EdgeInferError",
    "ModelError",
]


class EdgeInferError(Exception):
    """Base class of every error raised by edge_infer."""


class BackendNotFoundError(EdgeInferError, ImportError):
    """No TFLite runtime (ai-edge-litert, tflite-runtime, tensorflow) is importable."""


class DelegateUnavailableError(EdgeInferError, RuntimeError):
    """A delegate that was asked for explicitly cannot be loaded on this machine."""


class ModelError(EdgeInferError, ValueError):
    """A model file is missing, damaged, or not the kind of model expected."""
