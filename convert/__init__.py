"""The build-time conversion stage: MNIST -> trained CNN -> verified fully-int8 TFLite.

Run it from a checkout as ``python -m convert all --out DIR`` (see
``python -m convert --help``). TensorFlow is imported only by the steps that
need it; :mod:`convert.data` and :mod:`convert.errors` import numpy alone.
"""

from __future__ import annotations

from convert.errors import (
    CompilationError,
    CompilerNotFoundError,
    ConvertError,
    DataError,
    NotFullyIntegerError,
)

__all__ = [
    "CompilationError",
    "CompilerNotFoundError",
    "ConvertError",
    "DataError",
    "NotFullyIntegerError",
]
