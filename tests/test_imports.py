"""The runtime stays light: importing it loads no TensorFlow, OpenCV or TFLite runtime."""

from __future__ import annotations

import subprocess
import sys

HEAVY = {"tensorflow", "cv2", "ai_edge_litert", "tflite_runtime", "flask", "keras"}


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(sorted(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return set(eval(out.strip().splitlines()[-1])) & HEAVY


def test_import_edge_infer_loads_nothing_heavy():
    assert _loaded_after("import edge_infer") == set()


def test_cli_parser_loads_nothing_heavy():
    # building the CLI (all subcommands registered) must not pull in Flask/OpenCV/TF
    assert _loaded_after("from edge_infer.apps.cli import build_parser; build_parser()") == set()


def test_loading_a_model_loads_litert_but_not_tensorflow():
    loaded = _loaded_after("import edge_infer; edge_infer.load_model()")
    assert "tensorflow" not in loaded and "keras" not in loaded
    assert loaded & {"ai_edge_litert", "tflite_runtime"}
