from __future__ import annotations

import subprocess
import sys

import pytest

from edge_infer import BackendNotFoundError
from edge_infer.runtime.backend import BACKENDS, get_backend


def test_prefers_ai_edge_litert():
    b = get_backend()
    assert b.name == "ai_edge_litert"
    assert b.version[0].isdigit()
    assert get_backend() is b


def test_unknown_backend_name_is_a_value_error():
    with pytest.raises(ValueError, match="unknown TFLite backend 'nope'.*ai_edge_litert"):
        get_backend("nope")


def test_no_runtime_names_the_pip_command():
    # Hide every runtime from a child interpreter: the error must say what to install.
    code = (
        "import sys\n"
        f"for n in {list(BACKENDS)!r}: sys.modules[n] = None\n"
        "from edge_infer.runtime.backend import get_backend\n"
        "from edge_infer import BackendNotFoundError\n"
        "try:\n    get_backend()\nexcept BackendNotFoundError as e:\n"
        "    assert isinstance(e, ImportError); print('ERR', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ERR no TFLite runtime")
    assert "pip install ai-edge-litert" in out and "tflite-runtime" in out


def test_backend_not_found_is_import_error():
    assert issubclass(BackendNotFoundError, ImportError)


def _backend_named_by_env(value: str) -> subprocess.CompletedProcess:
    code = "from edge_infer.runtime.backend import get_backend; print(get_backend().name)"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "EDGE_INFER_BACKEND": value},
    )


def test_env_var_forces_backend():
    # not the default (ai_edge_litert comes first): the variable must be what picks it
    pytest.importorskip("tensorflow")
    r = _backend_named_by_env("tensorflow")
    assert r.returncode == 0 and r.stdout.strip() == "tensorflow", r.stderr[-500:]


def test_env_var_with_an_unknown_backend_is_refused():
    r = _backend_named_by_env("onnxruntime")
    assert r.returncode != 0 and "unknown TFLite backend 'onnxruntime'" in r.stderr
