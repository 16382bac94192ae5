"""The exceptions edge_infer raises.

Every error is an :class:`EdgeInferError`, and also the built-in type a caller
would expect (``ImportError``, ``RuntimeError``, ``ValueError``), so both
``except EdgeInferError`` and ``except ValueError`` work.
"""

from __future__ import annotations

__all__ = [
    "BackendNotFoundError",
    "BrokerUnreachableError",
    "ClientError",
    "ConfigError",
    "DelegateUnavailableError",
    "EdgeInferError",
    "ModelError",
    "ModelNotFoundError",
    "SourceError",
    "StreamBusyError",
]


class EdgeInferError(Exception):
    """Base class of every error raised by edge_infer."""


class BackendNotFoundError(EdgeInferError, ImportError):
    """No TFLite runtime (ai-edge-litert, tflite-runtime, tensorflow) is importable."""


class DelegateUnavailableError(EdgeInferError, RuntimeError):
    """A delegate that was asked for explicitly cannot be loaded on this machine."""


class ModelError(EdgeInferError, ValueError):
    """A model file is missing, damaged, or not the kind of model expected."""


class ModelNotFoundError(ModelError, FileNotFoundError):
    """The model file does not exist."""


class SourceError(EdgeInferError, RuntimeError):
    """A camera or video source that does not open or stops giving frames."""


class StreamBusyError(EdgeInferError, RuntimeError):
    """No room for another live-stream viewer (or the stream is closing): try again later."""


class ClientError(EdgeInferError, ValueError):
    """A request the client got wrong: answered with ``status`` and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ConfigError(EdgeInferError, ValueError):
    """A configuration file (e.g. the meter reader's TOML) that is missing, malformed or inconsistent."""


class BrokerUnreachableError(EdgeInferError, ConnectionError):
    """The meter reader's MQTT broker did not answer when it started."""
