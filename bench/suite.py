"""Measure latency and overheads, each figure a ratio to a baseline from the same run.

Shared, noisy machines make absolute times unreliable, so every subject is timed
beside its baseline in interleaved rounds (baseline, subject, subject, baseline,
...), after a warm-up, and the figures are medians over the rounds; a ratio is
the median of the per-round ratios. Sections:

* ``classify`` and ``batch``: the raw interpreter's set + invoke + get (the
  floor) beside ``DigitRecognizer.classify`` and ``classify_batch`` at batches
  of 1, 4, 12 and 32, and a batch whose size changes from call to call;
* ``models``: int8 vs float, XNNPACK on (``cpu``) vs off (``cpu:noxnnpack``),
  1, 2 and 4 threads;
* ``detect``: ``detect`` per 640x480 frame, the full and the fast pipeline
  (``fast=True``), each split by stage, beside a plain OpenCV pipeline
  (``bench/detect_baseline.py``), with the recall and precision of all three;
* ``startup``: fresh processes: ``import edge_infer`` + load + first answer
  beside the raw runtime and beside TensorFlow + Keras (time and peak RSS).

The ``detect`` and ``startup`` sections read ``bench/`` and ``tests/scenes.py``
from a checkout of the repository; without one they are skipped, with the reason.
OpenCV is imported only by the ``detect`` section and TensorFlow only in child
processes.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.kit import (
    DETECT_BASELINES,
    ROOT,
    Subject,
    interleave,
    machine_info,
    paired,
    print_report,
    row,
    say,
    source_state,
    targets,
)

BATCHES = (1, 4, 12, 32)
THREADS = (1, 2, 4)
VARYING = (10, 11, 12, 13, 14)  # batch sizes cycled by the "varying" subject (mean 12)
DEFAULT_JSON = Path("bench") / "results" / "bench.json"


# --------------------------------------------------------------------------- models


def _raw(backend: Any, content: bytes, batch: int, *, threads: int, xnnpack: bool = True) -> Any:
    interp = backend.new_interpreter(content, num_threads=threads, xnnpack=xnnpack)
    if batch != 1:
        idx = interp.get_input_details()[0]["index"]
        interp.resize_tensor_input(idx, (batch, *interp.get_input_details()[0]["shape"][1:]), strict=False)
    interp.allocate_tensors()
    return interp


def _raw_call(interp: Any, x: np.ndarray) -> Callable[[], object]:
    """Set + invoke + get, tensor indices read once."""
    i = interp.get_input_details()[0]["index"]
    o = interp.get_output_details()[0]["index"]
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor

    def call() -> object:
        set_tensor(i, x)
        invoke()
        return get_tensor(o)

    return call


def _model_input(interp: Any, digits: np.ndarray) -> np.ndarray:
    """uint8 MNIST digits (N, 28, 28) -> the model's input tensor values."""
    d = interp.get_input_details()[0]
    x = digits.astype(np.float32) / 255.0
    scale, zero = d["quantization"]
    if scale:
        x = np.clip(np.rint(x / scale) + zero, np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max)
    return np.ascontiguousarray(x.astype(d["dtype"]).reshape((len(digits), *d["shape"][1:])))


def _take(digits: np.ndarray, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(digits, (n, *digits.shape[1:])))


# --------------------------------------------------------------------------- sections


def section_latency(ctx: Context) -> dict[str, Any]:
    """classify and classify_batch beside the raw interpreter at the same batch sizes."""
    from edge_infer import DigitRecognizer

    a, content, backend = ctx.args, ctx.content, ctx.backend
    subjects: dict[str, Subject] = {}
    recs = []

    def rec() -> DigitRecognizer:
        recs.append(DigitRecognizer(ctx.model_path, delegate="cpu", num_threads=a.threads))
        return recs[-1]

    digit = ctx.digits[0]
    r1 = rec()
    subjects["classify"] = Subject("classify", lambda: r1.classify(digit), clock=ctx.clock)
    for n in BATCHES:
        x = _take(ctx.digits, n)
        interp = _raw(backend, content, n, threads=a.threads)
        subjects[f"raw@{n}"] = Subject(f"raw@{n}", _raw_call(interp, _model_input(interp, x)), n, clock=ctx.clock)
        subjects[f"batch@{n}"] = Subject(f"batch@{n}", functools.partial(rec().classify_batch, x), n, clock=ctx.clock)
    # The machine's speed drifts: each target's pair is timed back to back (the
    # rounds alternate direction, so neighbours stay neighbours).
    order = ["raw@1", "classify", "batch@12", "raw@12"]
    subjects = {k: subjects[k] for k in order + [k for k in subjects if k not in order]}
    rv = rec()
    varying = [_take(ctx.digits, n) for n in VARYING]

    def vary() -> None:
        for x in varying:
            rv.classify_batch(x)

    subjects["varying"] = Subject("varying", vary, sum(VARYING), clock=ctx.clock)
    crop = ctx.photo_crop()
    if crop is not None:
        rc = rec()
        subjects["classify-photo"] = Subject("classify-photo", lambda: rc.classify(crop), clock=ctx.clock)
    say(f"latency: {len(subjects)} subjects x {ctx.rounds} interleaved rounds")
    interleave(list(subjects.values()), rounds=ctx.rounds, block_s=ctx.block_s, warmup_s=ctx.warmup_s)
    for r in recs:
        r.close()
    s = subjects
    ctx.subjects.update(s)
    classify_rows = [
        row("raw set+invoke+get, batch 1 (floor)", s["raw@1"]),
        row("DigitRecognizer.classify", s["classify"], s["raw@1"], base_label="raw batch 1"),
    ]
    batch_rows = []
    for n in BATCHES:
        batch_rows.append(row(f"raw set+invoke+get, batch {n}", s[f"raw@{n}"], s["raw@1"], base_label="raw batch 1"))
        batch_rows.append(
            row(
                f"classify_batch({n})",
                s[f"batch@{n}"],
                s[f"raw@{n}"],
                base_label=f"raw batch {n}",
                vs_classify=paired(s[f"batch@{n}"], s["classify"]),
            )
        )
    batch_rows.append(
        row(
            f"classify_batch, size cycling {VARYING[0]}-{VARYING[-1]}",
            s["varying"],
            s["batch@12"],
            base_label="classify_batch(12)",
        )
    )
    if "classify-photo" in s and crop is not None:
        h, w = crop.shape[:2]
        classify_rows.append(
            row(
                f"classify, {h}x{w} BGR scene crop (to_mnist included)",
                s["classify-photo"],
                s["classify"],
                base_label="classify of a 28x28",
            )
        )
    return {"classify": {"rows": classify_rows}, "batch": {"rows": batch_rows}}


_FLOAT_CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from convert.pipeline import load_keras\n"
    "from convert.quantize import to_float_tflite\n"
    "Path(sys.argv[2]).write_bytes(to_float_tflite(load_keras(Path(sys.argv[1]))))\n"
)


def _find_float(ctx: Context) -> tuple[Path | None, str]:
    """The float model to compare, and where it came from (or why there is none).

    In order: ``--float-model`` (a ``.tflite``, or a ``.keras`` to convert); the newest
    ``digits_float.tflite`` under the checkout's ``runs/`` or ``out/``; the newest
    ``digits.keras`` there, converted by the conversion stage in a child process
    when TensorFlow is installed (cached in ``bench/results/cache``); else the
    checkout's float timing twin (:func:`_bundled_float`).
    """
    if ctx.float_model is not None:
        return ctx.float_model
    a = ctx.args
    keras_file = None
    if a.float_model:
        p = Path(a.float_model)
        if not p.is_file():
            raise FileNotFoundError(f"--float-model {p} does not exist")
        if p.suffix != ".keras":
            ctx.float_model = (p, "--float-model")
            return ctx.float_model
        keras_file = p
    else:

        def newest(name: str) -> Path | None:
            found = (p for d in ("runs", "out") for p in (ROOT / d).glob(f"**/{name}"))
            return max(found, key=lambda p: p.stat().st_mtime, default=None)

        found = newest("digits_float.tflite")
        if found is not None:
            ctx.float_model = (found, "newest digits_float.tflite under runs/ or out/")
            return ctx.float_model
        keras_file = newest("digits.keras")
    if keras_file is None:
        ctx.float_model = _bundled_float(ctx)
    elif importlib.util.find_spec("tensorflow") is None or not (ROOT / "convert" / "quantize.py").is_file():
        ctx.float_model = (
            None,
            f"{keras_file} needs TensorFlow and the checkout's convert/ to become a "
            "float .tflite; pass a digits_float.tflite with --float-model",
        )
    else:
        import hashlib
        import subprocess

        out = (
            ROOT
            / "bench"
            / "results"
            / "cache"
            / f"float-{hashlib.sha256(keras_file.read_bytes()).hexdigest()[:16]}.tflite"
        )
        if not out.is_file():
            say(f"converting {keras_file} to a float .tflite (TensorFlow, in a child process)")
            out.parent.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
            r = subprocess.run(
                [sys.executable, "-c", _FLOAT_CHILD, str(keras_file), str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            if r.returncode != 0:
                tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
                ctx.float_model = (None, f"converting {keras_file} failed: {tail}")
                return ctx.float_model
        ctx.float_model = (out, f"converted from {keras_file}")
    return ctx.float_model


BUNDLED_FLOAT = ROOT / "bench" / "models" / "digits_float.tflite"


def _graph(backend: Any, content: bytes) -> list[tuple[str, tuple[int, ...]]]:
    """A model's ops in order, each with its first output's shape (dtypes left out)."""
    interp = backend.new_interpreter(content, num_threads=1, xnnpack=False)
    interp.allocate_tensors()
    shapes = {d["index"]: tuple(int(v) for v in d["shape"]) for d in interp.get_tensor_details()}
    return [(str(op["op_name"]), shapes.get(int(op["outputs"][0]), ())) for op in interp._get_ops_details()]


def _bundled_float(ctx: Context) -> tuple[Path | None, str]:
    """The checkout's float timing twin (``bench/models``), if its graph is the int8 model's.

    Its weights come from a short training run, not the shipped model's: it times
    the float kernels on the same ops and shapes, and reads no digits.
    """
    fix = (
        "pass --float-model PATH (digits_float.tflite or digits.keras from "
        "`python -m convert all --out DIR`), or leave one under runs/ or out/"
    )
    if not BUNDLED_FLOAT.is_file():
        return None, f"no float model: {fix}"
    try:
        same = _graph(ctx.backend, BUNDLED_FLOAT.read_bytes()) == _graph(ctx.backend, ctx.content)
    except (RuntimeError, ValueError, KeyError, AttributeError) as e:  # AttributeError: no op details
        return None, f"the float timing twin {BUNDLED_FLOAT} cannot be checked ({e!r}): {fix}"
    if not same:
        return None, f"the float timing twin in bench/models has another graph than {ctx.model_path.name}: {fix}"
    return BUNDLED_FLOAT, "bench/models/digits_float.tflite: the same graph, weights from a one-epoch run (timing only)"


def _float_twin(float_path: Path, source: str) -> Path | None:
    """The int8 model from the same conversion run as the float one, if it sits beside it."""
    base = Path(source.split("converted from ", 1)[1]) if source.startswith("converted from ") else float_path
    twin = base.with_name("digits_int8.tflite")
    return twin if twin.is_file() else None


def section_models(ctx: Context) -> dict[str, Any]:
    """int8 vs float, XNNPACK on vs off, 1/2/4 threads: raw interpreter at batch 1 and 12."""
    backend, content = ctx.backend, ctx.content
    subjects: dict[str, Subject] = {}
    configs: list[tuple[str, bytes, bool, int]] = []
    for xnn in (True, False):
        for t in THREADS:
            configs.append(("int8", content, xnn, t))
    float_path, why = _find_float(ctx)
    info: dict[str, Any] = {"float_model": str(float_path) if float_path else None, "float_source": why}
    if float_path is not None:
        twin = _float_twin(float_path, why)
        if twin is not None and twin.read_bytes() != content:
            info["int8_twin"] = str(twin)
            for xnn in (True, False):
                configs.append(("int8 (float's run)", twin.read_bytes(), xnn, 1))
        for xnn in (True, False):
            configs.append(("float", float_path.read_bytes(), xnn, 1))
        info["notes"] = [f"float model: {why}"]
    else:
        info["notes"] = [f"float rows skipped: {why}"]
        say(f"models: float rows skipped: {why}")
    for name, data, xnn, t in configs:
        for n in (1, 12):
            key = f"{name}|{'xnnpack' if xnn else 'noxnnpack'}|{t}|{n}"
            try:
                interp = _raw(backend, data, n, threads=t, xnnpack=xnn)
            except (RuntimeError, ValueError) as e:
                say(f"models: {key} skipped: {e}")
                continue
            subjects[key] = Subject(
                key, _raw_call(interp, _model_input(interp, _take(ctx.digits, n))), n, clock="cpu" if t == 1 else "wall"
            )
    say(f"models: {len(subjects)} configurations x {ctx.rounds} interleaved rounds")
    interleave(list(subjects.values()), rounds=ctx.rounds, block_s=ctx.block_s, warmup_s=ctx.warmup_s)
    ctx.subjects.update(subjects)
    rows = []
    for key, s in subjects.items():
        name, xnn_label, threads, batch = key.split("|")
        base_name = "int8 (float's run)" if name == "float" and "int8_twin" in info else "int8"
        base = subjects.get(f"{base_name}|xnnpack|1|{batch}")
        xnn_text = "XNNPACK" if xnn_label == "xnnpack" else "no XNNPACK"
        label = f"{name}, {xnn_text}, {threads} thread{'s' * (threads != '1')}, batch {batch}"
        rows.append(
            row(label, s, None if base is s else base, base_label=f"{base_name}, XNNPACK, 1 thread, batch {batch}")
        )
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > cores or max(THREADS) > cores:
        info.setdefault("notes", []).append(
            f"load average {load:.1f} on {cores} cores: rows with more than one thread (wall clock) "
            "measure the contention for cores as much as the runtime"
        )
    return {"models": {"rows": rows, **info}}


def _checkout_module(name: str) -> Any:
    """A module from the checkout's bench/ directory, or None without a checkout."""
    path = ROOT / "bench" / f"{name}.py"
    if not path.is_file():
        return None
    mod_name = f"_edge_infer_bench_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def section_detect(ctx: Context) -> dict[str, Any]:
    """detect per frame (full and fast pipelines), by stage, beside the baseline pipeline;
    recall and precision of all three."""
    from edge_infer import DetectStats, DigitRecognizer

    db = ctx.detect_module
    if db is None or ctx.scenes is None or not (ROOT / "tests" / "scenes.py").is_file():
        return {"detect": {"skipped": ctx.scenes_error or "needs a checkout (bench/, tests/scenes.py)"}}
    a, frames, truths = ctx.args, ctx.scenes.frames, ctx.scenes.truths
    rec = DigitRecognizer(ctx.model_path, delegate="cpu", num_threads=a.threads)
    baseline = db.BaselineDetector(_raw(ctx.backend, ctx.content, 1, threads=a.threads))
    quality = {
        "detect": db.score([rec.detect(f) for f in frames], truths),
        "detect-fast": db.score([rec.detect(f, fast=True) for f in frames], truths),
        "baseline": db.score([baseline(f) for f in frames], truths),
    }
    pipelines = {"detect": False, "detect-fast": True}
    stages: dict[str, dict[str, list[float]]] = {k: {"segment": [], "prepare": [], "infer": []} for k in pipelines}

    def runner(key: str) -> Callable[[], None]:
        fast, per_stage = pipelines[key], stages[key]
        timing = DetectStats()

        def run() -> None:
            total = dict.fromkeys(per_stage, 0.0)
            for f in frames:
                rec.detect(f, fast=fast, stats=timing)
                for k, v in timing.as_dict().items():
                    total[k] += v
            for k in total:
                per_stage[k].append(total[k] / len(frames))

        return run

    def run_baseline() -> None:
        for f in frames:
            baseline(f)

    # Each pipeline is timed in its own loop with its own run of the baseline: a third
    # subject in the loop (the full pipeline's 15-20 ms and megabytes of temporaries
    # between the other two) changes what the caches hold for the two compared.
    bases = {k: Subject(DETECT_BASELINES[k], run_baseline, len(frames), block=1, clock=ctx.clock) for k in pipelines}
    dets = {k: Subject(k, runner(k), len(frames), block=1, clock=ctx.clock) for k in pipelines}
    rounds = ctx.rounds
    say(
        f"detect: {len(frames)} frames ({sum(len(t) for t in truths)} digits) x {rounds} interleaved rounds, "
        "each pipeline beside the baseline"
    )
    import cv2

    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(a.threads)  # OpenCV as single-threaded as the interpreter (CPU time = work)
    try:
        for key in pipelines:
            interleave([dets[key], bases[key]], rounds=rounds, block_s=0.0, warmup_s=0.0)
    finally:
        cv2.setNumThreads(cv_threads)
    rec.close()
    ctx.subjects.update({b.key: b for b in bases.values()} | dets)
    rows = []
    labels = {"detect": "detect (full pipeline, all stages)", "detect-fast": "detect(fast=True) (all stages)"}
    beside = {"detect": "the full pipeline", "detect-fast": "the fast pipeline"}
    for key, det in dets.items():
        base = bases[key]
        rows.append(
            row(
                f"baseline: adaptive threshold + contours + invoke per crop (beside {beside[key]})",
                base,
                unit="us/frame",
                **{k: quality["baseline"][k] for k in ("recall", "precision")},
            )
        )
        rows.append(
            row(
                labels[key],
                det,
                base,
                unit="us/frame",
                base_label="baseline pipeline",
                **{k: quality[key][k] for k in ("recall", "precision")},
            )
        )
        head = rows[-1]
        for k, v in stages[key].items():  # timings are wall time: shares of it, applied to the figure above
            v = v[-rounds:]  # the warm-up pass is not a sample
            share = float(np.median(np.array(v) / np.array(det.wall)))
            rows.append(
                {
                    "label": f"  stage {k} (share of wall time)",
                    "key": f"{key}:{k}",
                    "value": share * head["value"],
                    "unit": "us/frame",
                    "clock": head["clock"],
                    "share": share,
                    "wall": float(np.median(v)) * 1e6,
                }
            )
    return {
        "detect": {
            "rows": rows,
            "quality": quality,
            "frames": len(frames),
            "seeds": ctx.scenes.seeds,
            "digits": sum(len(t) for t in truths),
            "scenes_source": ctx.scenes.source,
        }
    }


def section_startup(ctx: Context) -> dict[str, Any]:
    """Fresh processes: import + load + first answer, time and peak RSS."""
    st = _checkout_module("startup")
    if st is None:
        return {"startup": {"skipped": "needs a checkout (bench/startup.py)"}}
    rounds, tf_rounds = (1, 1) if ctx.args.quick else (9, 3)
    float_path, why = _find_float(ctx)
    keras = [Path(why.split("converted from ", 1)[1])] if why.startswith("converted from ") else []
    keras += [float_path.with_name("digits.keras")] if float_path else []
    keras += sorted(
        (p for d in ("runs", "out") for p in (ROOT / d).glob("**/digits.keras")), key=lambda p: -p.stat().st_mtime
    )
    keras_model = next((p for p in keras if p.is_file()), None)
    say(f"startup: fresh processes x {rounds} rounds, TensorFlow in {tf_rounds} (its import takes seconds)")
    return {
        "startup": st.measure(
            ctx.model_path,
            ctx.backend.name,
            rounds=rounds,
            tf_rounds=tf_rounds,
            root=ROOT,
            package_dir=Path(__file__).resolve().parent.parent,
            keras_model=keras_model,
            progress=say,
        )
    }


# --------------------------------------------------------------------------- CLI


@dataclass
class Context:
    args: argparse.Namespace
    model_path: Path
    content: bytes
    backend: Any
    digits: np.ndarray
    rounds: int
    block_s: float
    warmup_s: float
    clock: str = "cpu"
    detect_module: Any = None
    scenes: Any = None
    scenes_error: str = ""
    float_model: tuple[Path | None, str] | None = None
    subjects: dict[str, Subject] = field(default_factory=dict)

    def photo_crop(self) -> np.ndarray | None:
        """A camera-like crop of one digit (with a margin) from the first scene, or None."""
        if self.scenes is None or not self.scenes.truths or not self.scenes.truths[0]:
            return None
        frame, (x, y, w, h) = self.scenes.frames[0], self.scenes.truths[0][0].box
        m = max(4, h // 5)
        return np.ascontiguousarray(frame[max(0, y - m) : y + h + m, max(0, x - m) : x + w + m])


SECTIONS = {"latency": section_latency, "models": section_models, "detect": section_detect, "startup": section_startup}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench``."""
    p.add_argument("--quick", action="store_true", help="a short run (fewer rounds and frames): a smoke test")
    p.add_argument(
        "--json",
        type=Path,
        default=DEFAULT_JSON,
        metavar="PATH",
        help=f"write the results here (default {DEFAULT_JSON})",
    )
    p.add_argument("--plot", type=Path, default=None, metavar="PATH", help="also draw the ratios as a PNG")
    p.add_argument("--model", default=None, help="the int8 model (default: the shipped one)")
    p.add_argument(
        "--float-model",
        default=None,
        metavar="PATH",
        help="a float .tflite to compare (default: the newest digits_float.tflite under runs/ or out/)",
    )
    p.add_argument("--threads", type=int, default=1, help="interpreter threads outside the models section (default 1)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 21, quick 5)")
    p.add_argument("--frames", type=int, default=None, help="scene frames for detect (default 30, quick 4)")
    p.add_argument(
        "--mnist", default=None, metavar="PATH", help="MNIST (a Keras mnist.npz or IDX directory) for the scenes"
    )
    p.add_argument("--only", default=None, metavar="LIST", help=f"comma-separated sections: {', '.join(SECTIONS)}")


def run(args: argparse.Namespace) -> int:
    """Runs the benchmark; returns 0 (targets missed are reported, not an error)."""
    from edge_infer.runtime import get_backend, read_manifest, shipped_model_path
    from edge_infer.runtime.sysmem import keeps_freed_memory

    only = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = set(only) - set(SECTIONS)
    if unknown:
        raise ValueError(f"--only: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    model_path = Path(args.model) if args.model else shipped_model_path()
    started = time.time()
    load_start = os.getloadavg()
    backend = get_backend()
    content = model_path.read_bytes()
    rounds = args.rounds or (5 if args.quick else 21)
    ctx = Context(
        args,
        model_path,
        content,
        backend,
        digits=np.zeros((0, 28, 28), np.uint8),
        rounds=rounds,
        block_s=0.005 if args.quick else 0.02,
        warmup_s=0.1 if args.quick else 0.5,
    )
    ctx.clock = "cpu" if args.threads == 1 else "wall"
    ctx.detect_module = _checkout_module("detect_baseline")
    if ctx.detect_module is not None:
        try:
            ctx.scenes = ctx.detect_module.load_scenes(
                args.frames or (4 if args.quick else 30), mnist_path=args.mnist, progress=say
            )
            ctx.digits = ctx.scenes.digits
            say(f"scenes: {len(ctx.scenes.frames)} frames from {ctx.scenes.source}")
        except Exception as e:  # no MNIST, no PIL or fonts: the section says why
            ctx.scenes_error = f"scenes unavailable: {type(e).__name__}: {e}"
            say(ctx.scenes_error)
    if len(ctx.digits) == 0:  # timing does not depend on the pixels
        ctx.digits = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    sections: dict[str, Any] = {}
    for name in only:
        sections.update(SECTIONS[name](ctx))
    manifest = read_manifest(model_path) or {}
    result = {
        "meta": {
            "edge_infer": _version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
            "seconds": round(time.time() - started, 1),
            "quick": bool(args.quick),
            "rounds": rounds,
            "threads": args.threads,
            "delegate": "cpu",
            "malloc_keeps_freed_memory": keeps_freed_memory(),
            "backend": f"{backend.name} {backend.version}",
            "model": str(model_path),
            "macs_per_digit": manifest.get("macs_per_digit"),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            **machine_info(),
            **source_state(),
            "method": "interleaved rounds after a warm-up; value = median over rounds; "
            "ratio = median of per-round ratios [quartiles]; clock 'cpu' = process CPU time "
            "(single-threaded work: leaves out waiting for a core on a shared machine), "
            "'wall' = elapsed time (used where threads run in parallel)",
        },
        "sections": sections,
        "targets": targets(sections, ctx.subjects),
        "samples_s": {k: {"clock": s.clock, "wall": s.wall, "cpu": s.cpu} for k, s in ctx.subjects.items()},
    }
    print_report(result)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    say(f"wrote {args.json}")
    if args.plot:
        plot = _checkout_module("plot")
        if plot is None:
            say("--plot needs a checkout (bench/plot.py); no PNG written")
        else:
            plot.draw(result, args.plot)
            say(f"wrote {args.plot}")
    return 0


def _version() -> str:
    from edge_infer import __version__

    return __version__
