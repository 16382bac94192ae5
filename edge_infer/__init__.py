"""edge_infer: int8 digit recognition on small devices.

>>> from edge_infer import DigitRecognizer
>>> rec = DigitRecognizer()          # shipped int8 model, delegate="auto"

Importing this package loads only the standard library and numpy; the TFLite
runtime is imported on first model load and OpenCV on first ``detect``.
"""

from __future__ import annotations

from .delegates import DelegateStatus, available_delegates
from .errors import BackendNotFoundError, DelegateUnavailableError, EdgeInferError, ModelError
from .model import Model, TensorSpec, load_model, read_manifest, shipped_model_path
from .preprocess import to_mnist
from .recognizer import Detection, DigitRecognizer, Prediction
from .vision import Number

__version__ = "0.1.0"

__all__ = [
    "BackendNotFoundError",
    "DelegateStatus",
    "DelegateUnavailableError",
    "Detection",
    "DigitRecognizer",
    "EdgeInferError",
    "Model",
    "ModelError",
    "Number",
    "Prediction",
    "TensorSpec",
    "__version__",
    "available_delegates",
    "load_model",
    "read_manifest",
    "shipped_model_path",
    "to_mnist",
]
