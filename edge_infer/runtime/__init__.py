"""Generic TFLite / LiteRT: the runtime import, model files and manifests, delegates, :class:`Model`.

Knows nothing of digits: any ``.tflite`` model loads here. Importing this package
loads no TFLite runtime; :mod:`.backend` imports one when the first model loads.
"""

from __future__ import annotations

from .backend import BACKENDS, Backend, get_backend
from .delegates import DelegateStatus, available_delegates
from .model import Model, TensorSpec, load_model
from .modelfile import manifest_path, read_manifest, shipped_model_path

__all__ = [
    "BACKENDS",
    "Backend",
    "DelegateStatus",
    "Model",
    "TensorSpec",
    "available_delegates",
    "get_backend",
    "load_model",
    "manifest_path",
    "read_manifest",
    "shipped_model_path",
]
