"""edge_infer: int8 digit recognition on small devices.

>>> from edge_infer import DigitRecognizer
>>> rec = DigitRecognizer()          # shipped int8 model, delegate="auto"

Importing this package loads only the standard library and numpy; the TFLite
runtime is imported on first model load and OpenCV on first ``detect``.

Layers, top to bottom (an import only ever points down): ``apps`` (CLI, camera
demo, service) -> ``recognizer`` -> ``detect`` (frames -> digits) -> ``image``
(arrays, no model) and ``runtime`` (TFLite, no digits) -> ``results``, ``errors``.
"""

from __future__ import annotations

from .errors import (
    BackendNotFoundError,
    DelegateUnavailableError,
    EdgeInferError,
    ModelError,
    ModelNotFoundError,
)
from .image.preprocess import to_mnist
from .recognizer import DigitRecognizer
from .results import Detection, DetectStats, Number, Prediction
from .runtime import (
    DelegateStatus,
    Model,
    TensorSpec,
    available_delegates,
    load_model,
    read_manifest,
    shipped_model_path,
)

__version__ = "0.2.0"

__all__ = [
    "BackendNotFoundError",
    "DelegateStatus",
    "DelegateUnavailableError",
    "DetectStats",
    "Detection",
    "DigitRecognizer",
    "EdgeInferError",
    "Model",
    "ModelError",
    "ModelNotFoundError",
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
