"""Process start-up for ``python -m bench``: fresh processes, time to a first answer and peak RSS.

Each child is a new Python process that times, from its first line, the import,
the model load and one answer on one digit, and reports its own peak resident
set (``VmHWM`` from ``/proc/self/status``; ``ru_maxrss`` where there is no ``/proc``,
but on Linux that figure survives ``exec`` and would report the parent's size):

* ``python``: ``import numpy`` only (what any of the others costs at least);
* ``litert``: the raw runtime: import its interpreter module, load, one invoke;
* ``edge_infer``: ``import edge_infer``, ``DigitRecognizer()`` (the default
  ``delegate="auto"`` path, sha256 check included), one ``classify``;
* ``tensorflow``: ``import tensorflow``, a Keras digit model (a ``.keras`` file
  when one is given, else the conversion stage's architecture built in code),
  one ``predict``, the path a Flask app built on Keras takes.

Before the rounds, the measured ``edge_infer`` is compiled to bytecode, as pip
does when it installs a wheel (the runtime and numpy come from site-packages,
compiled at their install); see :func:`compile_package`.

The children run in interleaved rounds; the ratio is the median of the
per-round ratios to ``litert``. Figures are the child's CPU time from its first
line (on a shared machine, wall time mostly measures the neighbours); its wall
time, and the parent's wall time for the whole process (Python's own start
included), are recorded beside them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

_HEAD = "import json, resource, time\nt0, c0 = time.perf_counter(), time.process_time()\n"
# Peak RSS from VmHWM: on Linux ru_maxrss survives exec, so a child forked from the (large)
# benchmark process would report the parent's size.
_TAIL = (
    "t1, c1 = time.perf_counter(), time.process_time()\n"
    "try:\n"
    "    peak = next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
    "except (OSError, StopIteration):\n"
    "    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(json.dumps({'seconds': t1 - t0, 'cpu': c1 - c0, 'rss_kb': peak, 'note': NOTE}))\n"
)

_CHILDREN = {
    "python": "import numpy as np\nNOTE = ''\n",
    "litert": (
        "import numpy as np\n"
        "from {backend}.interpreter import Interpreter\n"
        "it = Interpreter(model_path={model!r})\n"
        "it.allocate_tensors()\n"
        "i, o = it.get_input_details()[0], it.get_output_details()[0]\n"
        "it.set_tensor(i['index'], np.zeros(i['shape'], i['dtype']))\n"
        "it.invoke()\n"
        "it.get_tensor(o['index'])\n"
        "NOTE = ''\n"
    ),
    "edge_infer": (
        "import numpy as np\n"
        "import edge_infer\n"
        "rec = edge_infer.DigitRecognizer({model_arg})\n"
        "rec.classify(np.zeros((28, 28), np.uint8))\n"
        "NOTE = rec.model.delegate\n"
    ),
    "tensorflow": (
        "import numpy as np\n"
        "import tensorflow as tf\n"
        "import keras\n"
        "if {keras_model!r}:\n"
        "    model = keras.models.load_model({keras_model!r})\n"
        "    NOTE = 'loaded ' + {keras_model!r}\n"
        "else:\n"
        "    try:\n"
        "        from convert.train import build_model\n"
        "        model = build_model()\n"
        "        NOTE = 'convert.train.build_model() (untrained)'\n"
        "    except ImportError:\n"
        "        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(16, 3, activation='relu'),\n"
        "                                  keras.layers.MaxPooling2D(), keras.layers.Flatten(),\n"
        "                                  keras.layers.Dense(10, activation='softmax')])\n"
        "        NOTE = 'a small Sequential CNN (untrained)'\n"
        "model.predict(np.zeros((1, 28, 28, 1), np.float32), verbose=0)\n"
    ),
}

LABELS = {
    "python": "python + import numpy (reference)",
    "litert": "raw runtime: import + Interpreter + 1 invoke",
    "edge_infer": "import edge_infer + DigitRecognizer() + classify",
    "tensorflow": "import tensorflow + Keras model + predict",
}


def compile_package(pkg: Path) -> str:
    """Writes the bytecode of the package in ``pkg``, as pip does when it installs a wheel.

    The raw runtime and numpy come from site-packages, where pip compiled them at
    install. A checkout's ``edge_infer`` has bytecode only once an import could write
    it, which ``PYTHONDONTWRITEBYTECODE`` (set on some machines) prevents: every
    child would then compile the package's source, 20-30 ms that an installed
    package never pays. Returns a note for the report.
    """
    import compileall

    if compileall.compile_dir(str(pkg), quiet=2):
        return f"{pkg.name} bytecode compiled before timing, as pip does at install ({pkg})"
    return f"{pkg.name} bytecode could not be written under {pkg}: its children also compile the source"


def _run_child(code: str, env: dict[str, str]) -> dict[str, Any]:
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"child exited with {p.returncode}: {tail}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall"] = wall
    return out


def measure(
    model: Path,
    backend: str,
    *,
    rounds: int,
    root: Path,
    package_dir: Path,
    tf_rounds: int = 1,
    keras_model: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the children in interleaved rounds; returns the ``startup`` section of the results.

    Args:
        model: The int8 model every child loads (the tensorflow child excepted).
        backend: The runtime module name (``ai_edge_litert`` or ``tflite_runtime``).
        rounds: Rounds of the light children.
        tf_rounds: Rounds that include the tensorflow child (it takes seconds each).
        root: The checkout (on the tensorflow child's path, for ``convert``).
        package_dir: The directory holding the ``edge_infer`` package being measured.
        keras_model: A ``.keras`` file for the tensorflow child, or None.
        progress: Where progress lines go.
    """
    env = dict(
        os.environ,
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join(
            [str(package_dir), str(root)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    )
    from edge_infer.runtime.model import shipped_model_path

    model_arg = "" if model == shipped_model_path() else repr(str(model))
    codes = {
        k: _HEAD
        + v.format(
            backend=backend, model=str(model), model_arg=model_arg, keras_model=str(keras_model) if keras_model else ""
        )
        + _TAIL
        for k, v in _CHILDREN.items()
    }
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("tensorflow") is None:
        skipped["tensorflow"] = "TensorFlow is not installed here (pip install tensorflow-cpu to compare)"
        del codes["tensorflow"]
    compiled = compile_package(package_dir / "edge_infer")
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in codes}
    order = list(codes)
    for r in range(rounds):
        for k in order if r % 2 == 0 else order[::-1]:
            if k in skipped or (k == "tensorflow" and r >= tf_rounds):
                continue
            try:
                results[k].append(_run_child(codes[k], env))
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
                skipped[k] = str(e)
                progress(f"startup: {k} failed: {e}")
        progress(f"startup: round {r + 1}/{rounds} done")
    rows = []
    base = results.get("litert") if "litert" not in skipped else None
    for k, runs in results.items():
        if k in skipped or not runs:
            continue
        cpu = np.array([x["cpu"] for x in runs])
        row: dict[str, Any] = {
            "label": LABELS[k],
            "key": k,
            "value": float(np.median(cpu)) * 1e3,
            "unit": "ms",
            "clock": "cpu",
            "wall": float(np.median([x["seconds"] for x in runs])) * 1e3,
            "wall_ms": float(np.median([x["wall"] for x in runs])) * 1e3,
            "rss_mb": float(np.median([x["rss_kb"] for x in runs])) / 1024.0,
            "note": runs[0]["note"],
        }
        if base and k != "litert":
            n = min(len(runs), len(base))  # the tensorflow child ran in the first rounds only
            ratios = cpu[:n] / np.array([x["cpu"] for x in base[:n]])
            q1, med, q3 = np.percentile(ratios, [25, 50, 75])
            row.update(
                baseline=float(np.median([x["cpu"] for x in base])) * 1e3,
                baseline_key="litert",
                baseline_label="raw runtime",
                ratio=float(med),
                q1=float(q1),
                q3=float(q3),
                clock="cpu",
            )
        rows.append(row)
    notes = [compiled] + [f"{k} skipped: {why}" for k, why in skipped.items()]
    notes += [f"{r['key']}: {r['note']}" for r in rows if r["note"]]
    return {"rows": rows, "rounds": rounds, "skipped_rows": skipped, "notes": notes}
