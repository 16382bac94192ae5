"""Model files: where the shipped model lives, manifests, and checks made before
the runtime sees a byte (existence, size, the TFLite file identifier, sha256)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ModelError, ModelNotFoundError

__all__ = [
    "EDGETPU_OP",
    "EDGETPU_SUFFIX",
    "ModelNotFoundError",
    "is_edgetpu_model",
    "manifest_path",
    "read_checked",
    "read_manifest",
    "resolve_path",
    "shipped_model_path",
]

SHIPPED_MODEL = "digits_int8.tflite"
EDGETPU_SUFFIX = "_edgetpu"
EDGETPU_OP = b"edgetpu-custom-op"
_MAX_MODEL_BYTES = 256 * 1024 * 1024


def shipped_model_path() -> Path:
    """Path of the int8 digit model shipped inside the package."""
    # the package is always installed as files (setup.py ships no zip), so a plain path
    # serves; importlib.resources would add ~10 modules to the start-up
    return Path(__file__).resolve().parent.parent / "models" / SHIPPED_MODEL


def manifest_path(model_path: str | os.PathLike[str]) -> Path:
    """The manifest that belongs to a model: ``<stem>.json`` beside it."""
    p = Path(model_path)
    return p.with_name(p.stem + ".json")


def read_manifest(model_path: str | os.PathLike[str] | None = None) -> dict[str, Any] | None:
    """Reads the JSON manifest beside a model (default: the shipped one).

    Returns:
        The manifest as a dict, or None when the model has no manifest.

    Raises:
        ModelError: The manifest exists but is not valid JSON.
    """
    path = manifest_path(model_path if model_path is not None else shipped_model_path())
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model manifest {path} is unreadable ({e}); restore it or pass verify=False") from e
    if not isinstance(data, dict):
        raise ModelError(f"model manifest {path} is not a JSON object; restore it or pass verify=False")
    return data


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        return shipped_model_path()
    if isinstance(path, (bytes, bytearray)):
        raise TypeError("model path must be a str or os.PathLike, not bytes; decode it first")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"model must be a path to a .tflite file (str or os.PathLike) or None for the "
            f"shipped model, not {type(path).__name__}"
        )
    text = os.fspath(path)
    if not text:
        raise ModelError("model path is an empty string; pass a .tflite path or None for the shipped model")
    return Path(text).expanduser()


def read_checked(path: Path, *, verify: bool) -> bytes:
    """Reads a model file, refusing anything that is not a plausible, intact TFLite model."""
    if not path.exists():
        raise ModelNotFoundError(f"model file {path} does not exist; check the path")
    if path.is_dir():
        raise ModelError(f"model path {path} is a directory; pass the .tflite file inside it")
    try:
        size = path.stat().st_size
        if size > _MAX_MODEL_BYTES:
            raise ModelError(
                f"model file {path} is {size} bytes, over the {_MAX_MODEL_BYTES} byte limit for a "
                "device model; is it the right file?"
            )
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"model file {path} cannot be read ({e})") from e
    if not data:
        raise ModelError(f"model file {path} is empty; re-copy or re-export the model")
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise ModelError(
            f"{path} is not a TFLite model (no 'TFL3' file identifier at byte 4); "
            "pass a .tflite file exported by the TFLite converter"
        )
    if verify:
        manifest = read_manifest(path)
        expected = manifest.get("sha256") if manifest else None
        if expected:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise ModelError(
                    f"model file {path} is damaged: its sha256 {actual[:16]}... differs from "
                    f"{expected[:16]}... in {manifest_path(path).name}; reinstall or re-export "
                    "it (verify=False skips this check)"
                )
    return data


def is_edgetpu_model(path: Path, data: bytes) -> bool:
    return EDGETPU_OP in data or path.stem.endswith(EDGETPU_SUFFIX)
