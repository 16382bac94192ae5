"""The steps of the conversion stage, each writing its artifacts atomically into one directory.

Layout of ``--out DIR``::

    digits.keras             trained float model (Keras 3 format)
    train.json               training settings and per-epoch history
    digits_float.tflite      float32 TFLite
    digits_int8.tflite       fully integer TFLite (the device model)
    digits_int8.json         its manifest (the one edge_infer ships)
    digits_int8_edgetpu.tflite / .log   when edgetpu_compiler is installed
    edgetpu.json             pre-check and compiler report
    baseline_int8.tflite     the plain baseline CNN, for the latency comparison
    report/                  report.md, report.json, PNGs
    saved_model/             with --saved-model
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.atomic import atomic_dir, write_bytes, write_json
from convert.data import MnistData
from convert.errors import CompilerNotFoundError, ConvertError

REPO = Path(__file__).resolve().parent.parent
SHIPPED_DIR = REPO / "edge_infer" / "models"
DOCS_REPORT = REPO / "docs" / "conversion_report"
CONVENTION = "MNIST: 28x28 white digit on black, longest side 20 px, centre of mass centred; values in [0,1]"
TARGETS = {"min_int8_accuracy": 0.994, "max_drop_pp": 0.1, "max_size_bytes": 100_000}
REJECT_LABEL = "not a digit"
HELDOUT_NEGATIVES = 2000
HELDOUT_PRINTED = 2000
HELDOUT_DISPLAYS = 2000


def say(msg: str) -> None:
    """Progress for people (stdout, flushed)."""
    print(f"[convert] {msg}", flush=True)


def command_line() -> str:
    return "python -m convert " + shlex.join(sys.argv[1:])


def save_keras(model: Any, path: Path) -> Path:
    """Save a Keras model atomically (Keras insists on a ``.keras`` suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}.", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_keras(path: Path) -> Any:
    import keras

    if not path.is_file():
        raise ConvertError(f"{path}: no trained model here; run `python -m convert train --out {path.parent}` first")
    return keras.models.load_model(path)


# --------------------------------------------------------------------------- steps


def step_train(data: MnistData, out: Path, cfg: Any, *, saved_model: Path | None = None) -> Any:
    from convert.train import count_macs, effective_batch_size, train

    n = len(data.x_train) if cfg.limit is None else min(cfg.limit, len(data.x_train))
    n_printed = cfg.printed_for(n)
    n_neg = cfg.negatives_for(n + n_printed)
    n_displays = cfg.displays_for(n)
    neg = f" + {n_neg} 'not a digit' negatives" if cfg.reject_class else " (no 'not a digit' class)"
    meter = f" + meter-digits train split from {cfg.meter_dir} x{cfg.meter_repeat}" if cfg.meter_dir else ""
    say(
        f"training on {n} images + {n_printed} printed digits{neg} + {n_displays} display digits{meter} "
        f"({len(data.x_val)} held out for validation), {cfg.epochs} epoch(s), seed {cfg.seed}"
    )
    n_meter = 0
    if cfg.meter_dir:
        from convert.meterdigits import load_meter_digits

        n_meter = len(load_meter_digits("train", cfg.meter_dir))  # cached: normalised once, here
    model, history = train(data, cfg)
    save_keras(model, out / "digits.keras")
    write_json(
        out / "train.json",
        {
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "command": command_line(),
            "batch_size": effective_batch_size(cfg, n + n_printed + n_neg + n_displays + n_meter * cfg.meter_repeat),
            "train_images": n,
            "printed": n_printed,
            "negatives": n_neg,
            "displays": n_displays,
            "meter_digits": n_meter,
            "data_sources": data_sources(data, cfg, n_meter=n_meter),
            "classes": cfg.classes,
            "val_images": len(data.x_val),
            "macs_per_digit": count_macs(model),
            "params": int(model.count_params()),
            "history": history,
        },
    )
    say(f"wrote {out / 'digits.keras'} ({count_macs(model):,} MACs per digit, {model.count_params():,} parameters)")
    if saved_model is not None:
        step_saved_model(model, saved_model)
    return model


def data_sources(data: MnistData, cfg: Any, *, n_meter: int) -> dict[str, Any]:
    """What the model was trained on, for ``train.json`` and the manifest (with the licence
    and attribution of meter-digits when it was used)."""
    src: dict[str, Any] = {
        "mnist": data.source,
        "printed": "drawn: convert.printed (Liberation + Hershey fonts)",
        "negatives": "drawn: convert.negatives (letters, symbols, lines; class 10)" if cfg.reject_class else None,
        "displays": "drawn: convert.displays (seven-segment LCD/LED, counter drums, dot matrix, "
        "14-segment, printed 1/4/7 faces)",
        "rolling_drums": {
            "nearest": "a drum between two digits is trained as its nearer digit",
            "near": "a drum between two digits is trained as its nearer digit within 0.35 of it, "
            "else as class 10 (not a digit)",
            "reject": "a drum between two digits is trained as class 10 (not a digit)",
        }[cfg.rolling_as],
    }
    if cfg.meter_dir and n_meter:
        from convert.meterdigits import ATTRIBUTION, LICENSE_NAME, SOURCE

        src["meter_digits"] = {
            "source": SOURCE,
            "license": LICENSE_NAME,
            "split": "train",
            "crops": n_meter,
            "repeat": cfg.meter_repeat,
            "attribution": ATTRIBUTION,
        }
    return src


def train_sources(out: Path) -> dict[str, Any]:
    """The manifest's provenance entries from ``out/train.json`` (empty when there is none)."""
    f = out / "train.json"
    if not f.is_file():
        return {}
    info = json.loads(f.read_text())
    extra: dict[str, Any] = {}
    if info.get("data_sources"):
        extra["training_data"] = info["data_sources"]
        md = info["data_sources"].get("meter_digits")
        if md:
            extra["license_notice"] = md["attribution"]
    return extra


def step_saved_model(model: Any, directory: Path) -> None:
    from convert.quantize import export_saved_model

    export_saved_model(model, directory)
    say(
        f"wrote SavedModel {directory} "
        f"(signature serving_default: image [N,28,28,1] -> probs [N,{model.output_shape[-1]}])"
    )


def step_quantize(model: Any, data: MnistData, out: Path, *, calibration: int, io: str) -> Any:
    from convert.quantize import to_float_tflite, to_int8_tflite, verify_fully_integer

    say("converting to float TFLite")
    write_bytes(out / "digits_float.tflite", to_float_tflite(model))
    rep = calibration_images(data, calibration, classes=int(model.output_shape[-1]))
    say(f"quantising to full integer ({io} I/O), calibrating on {len(rep)} training images")
    q = to_int8_tflite(model, rep, io=io)
    check = verify_fully_integer(q)  # refuse before anything is written under the final name
    write_bytes(out / "digits_int8.tflite", q)
    say(f"verified fully integer: {len(check.ops)} ops: {', '.join(check.op_names)}")
    train_cmd = None
    if (out / "train.json").is_file():
        train_cmd = json.loads((out / "train.json").read_text()).get("command")
    cmd = command_line()
    if train_cmd and not cmd.startswith("python -m convert all"):
        cmd = f"{train_cmd} && {cmd}"  # trained by one command, converted by this one
    write_manifest(
        out / "digits_int8.tflite",
        check,
        accuracy=None,
        macs=_macs(model),
        seed=None,
        command=cmd,
        extra=train_sources(out),
    )
    return check


def calibration_images(data: MnistData, calibration: int, *, classes: int, seed: int = 4321) -> np.ndarray:
    """The representative dataset: training digits, and with the reject class one negative,
    one printed digit and one display digit in eight.

    The negatives and printed digits come from another seed than training's; their
    activations (a confident class 10, a bold serif digit) must be inside the
    calibrated ranges too.
    """
    calibration = max(1, calibration)
    if classes != 11:
        return data.x_train[:calibration]
    from convert.displays import make_displays
    from convert.negatives import make_negatives
    from convert.printed import make_printed

    k = calibration // 8
    return np.concatenate(
        [
            data.x_train[: calibration - 3 * k],
            make_printed(k, seed)[0],
            make_negatives(k, seed),
            make_displays(k, seed)[0],
        ]
    )


def _macs(model: Any) -> int:
    from convert.train import count_macs

    return count_macs(model)


def write_manifest(
    model_path: Path,
    check: Any,
    *,
    accuracy: dict[str, Any] | None,
    macs: int | None,
    seed: int | None,
    command: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<stem>.json`` beside the model: what edge_infer reads (sha256, labels, I/O)."""
    import tensorflow as tf

    data = model_path.read_bytes()
    classes = int(check.output_shape[-1])
    labels = [str(i) for i in range(10)] + ([REJECT_LABEL] if classes == 11 else [])
    if classes not in (10, 11):
        raise ConvertError(f"{model_path}: {classes} output classes; expected 10 digits, or 11 with 'not a digit'")
    manifest: dict[str, Any] = {
        "name": model_path.stem,
        "file": model_path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "labels": labels,
        **({"reject_class": 10} if classes == 11 else {}),
        "input": {
            "shape": list(check.input_shape),
            "dtype": check.input_dtype,
            "scale": check.input_scale,
            "zero_point": check.input_zero_point,
            "convention": CONVENTION,
        },
        "output": {
            "shape": list(check.output_shape),
            "dtype": check.output_dtype,
            "kind": "softmax",
            "scale": check.output_scale,
            "zero_point": check.output_zero_point,
        },
        "accuracy": accuracy,
        "macs_per_digit": macs,
        "ops": check.op_names,
        "command": command or command_line(),
        "seed": seed,
        "tensorflow": tf.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
    }
    manifest.update(extra or {})
    return write_json(model_path.with_suffix(".json"), manifest)


def step_edgetpu(
    model_path: Path, out_dir: Path, *, compiler: str | None, min_runtime_version: int | None, required: bool
) -> dict[str, Any]:
    """Pre-check, then compile when a compiler exists. Writes ``edgetpu.json`` in ``out_dir``."""
    from convert.edgetpu import compile_model, precheck

    pre = precheck(model_path)
    for line in pre.summary():
        say(line)
    info: dict[str, Any] = {"precheck": pre.summary(), "precheck_ok": pre.ok, "split_at": pre.split_at}
    try:
        res = compile_model(model_path, out_dir=out_dir, compiler=compiler, min_runtime_version=min_runtime_version)
    except CompilerNotFoundError as e:
        if required:
            raise
        info["note"] = f"Not compiled here: {e}."
        say(f"skipping Edge TPU compilation: {e}")
    else:
        info["compiled"] = res.as_dict()
        mapped = "all ops mapped" if res.fully_mapped else f"{res.ops_on_cpu} op(s) left on the CPU"
        say(f"wrote {res.compiled_model} ({mapped}, {res.subgraphs} subgraph(s))")
    write_json(out_dir / "edgetpu.json", info)
    return info


def step_baseline(data: MnistData, out: Path, *, epochs: int, limit: int | None, seed: int, calibration: int) -> Any:
    import keras

    from convert.quantize import to_int8_tflite, verify_fully_integer
    from convert.train import TrainConfig, build_baseline, train

    say(f"training the baseline CNN (Conv16-Pool-Conv32-Pool-Dense64-Dense10) for {epochs} epoch(s), for timing")
    cfg = TrainConfig(
        epochs=epochs,
        limit=limit,
        seed=seed,
        augment=False,
        learning_rate=1e-3,
        reject_class=False,
        printed=0,
        displays=0,
        verbose=2,
    )
    keras.utils.set_random_seed(seed)
    model, _ = train(data, cfg, model=build_baseline())
    q = to_int8_tflite(model, data.x_train[:calibration])
    verify_fully_integer(q)
    write_bytes(out / "baseline_int8.tflite", q)
    return model


def step_evaluate(
    data: MnistData,
    out: Path,
    *,
    report_dir: Path,
    baseline_epochs: int,
    limit: int | None,
    seed: int,
    calibration: int,
    num_threads: int = 1,
    heldout: int = HELDOUT_NEGATIVES,
    heldout_printed: int = HELDOUT_PRINTED,
    heldout_displays: int = HELDOUT_DISPLAYS,
    meter_dir: Path | None = None,
) -> dict[str, Any]:
    from convert.evaluate import evaluate
    from convert.figures import digit_grid_png
    from convert.quantize import verify_fully_integer
    from convert.report import write_report
    from convert.train import augmentation_preview, build_baseline, count_macs

    model = load_keras(out / "digits.keras")
    int8 = out / "digits_int8.tflite"
    check = verify_fully_integer(int8)
    if not (out / "baseline_int8.tflite").is_file():
        step_baseline(data, out, epochs=baseline_epochs, limit=limit, seed=seed, calibration=calibration)
    classes = int(model.output_shape[-1])
    negatives = None
    if classes == 11:
        from convert.negatives import heldout_negatives

        say(f"drawing {heldout} held-out negatives (DejaVu fonts, never used in training; another seed)")
        negatives = heldout_negatives(heldout)
    from convert.printed import heldout_printed as draw_heldout_printed

    say(f"drawing {heldout_printed} held-out printed digits (DejaVu fonts, never used in training; another seed)")
    printed = draw_heldout_printed(heldout_printed)
    say("evaluating on the 10,000 MNIST test digits and timing every model in one run")
    ev = evaluate(
        data,
        keras_model=model,
        float_tflite=out / "digits_float.tflite",
        int8_tflite=int8,
        baseline_int8=out / "baseline_int8.tflite",
        negatives=negatives,
        printed=printed,
        num_threads=num_threads,
    )
    sources = _score_sources(
        int8, data, printed=printed, heldout_displays=heldout_displays, meter_dir=meter_dir, classes=classes
    )
    train_info = json.loads((out / "train.json").read_text()) if (out / "train.json").is_file() else {}
    edgetpu = json.loads((out / "edgetpu.json").read_text()) if (out / "edgetpu.json").is_file() else {}
    prev = json.loads((out / "digits_int8.json").read_text()) if (out / "digits_int8.json").is_file() else {}
    cfg = train_info.get("config", {})
    hist = train_info.get("history", {})
    sample = data.x_train[:10]
    aug = augmentation_preview(sample, seed=seed, copies=2)
    aug_png = digit_grid_png(np.concatenate([sample, aug]), [""] * 30, cols=10, scale=2)
    context = {
        "command": prev.get("command") or command_line(),
        "seed": cfg.get("seed", seed),
        "tensorflow": prev.get("tensorflow"),
        "created": prev.get("created"),
        "macs": count_macs(model),
        "baseline_macs": count_macs(build_baseline()),
        "ops": check.op_names,
        "check": {
            k: getattr(check, k)
            for k in (
                "input_shape",
                "input_dtype",
                "input_scale",
                "input_zero_point",
                "output_shape",
                "output_dtype",
                "output_scale",
                "output_zero_point",
            )
        },
        "edgetpu": edgetpu,
        "targets": TARGETS,
        "num_threads": num_threads,
        "latency_rounds": 7,
        "baseline_epochs": baseline_epochs,
        "calibration": prev.get("calibration", calibration),
        "data_source": data.source,
        "train": {
            "epochs": cfg.get("epochs"),
            "batch_size": train_info.get("batch_size"),
            "seed": cfg.get("seed"),
            "train_images": train_info.get("train_images"),
            "val_images": train_info.get("val_images"),
            "final_val_acc": (hist.get("val_acc") or [None])[-1],
            "params": train_info.get("params"),
        },
        "augmentation_png": aug_png,
        "classes": classes,
        "negatives_png": (
            digit_grid_png(negatives[:40], [""] * min(40, len(negatives)), cols=10, scale=2)
            if negatives is not None and len(negatives)
            else None
        ),
    }
    context["train"]["negatives"] = train_info.get("negatives")
    context["train"]["printed"] = train_info.get("printed")
    context["train"]["displays"] = train_info.get("displays")
    context["train"]["meter_digits"] = train_info.get("meter_digits")
    context["train"]["data_sources"] = train_info.get("data_sources")
    if sources is not None:
        from convert.sources import sources_markdown

        md = (train_info.get("data_sources") or {}).get("meter_digits")
        context["sources"] = {k: v for k, v in sources.items() if k != "pngs"}
        context["sources_pngs"] = sources["pngs"]
        context["sources_md"] = sources_markdown(sources, meter_note=md["attribution"] if md else None)
    pp = ev.printed_predictions.get("int8_edge_infer")
    if pp is not None and ev.printed_true is not None:
        wrong = np.flatnonzero(pp != ev.printed_true)[:40]
        caps = [f"{ev.printed_true[i]}->{'none' if pp[i] == 10 else pp[i]}" for i in wrong]
        context["printed_png"] = digit_grid_png(printed[0][:40], [str(v) for v in printed[1][:40]], cols=10, scale=2)
        context["printed_wrong_png"] = (
            digit_grid_png(printed[0][wrong], caps, cols=10, scale=2, title="true->predicted") if len(wrong) else None
        )
    write_report(report_dir, ev, data, context)
    acc = ev.manifest_accuracy()
    write_manifest(
        int8,
        check,
        accuracy=acc,
        macs=count_macs(model),
        seed=cfg.get("seed", seed),
        command=prev.get("command"),
        extra={"calibration": context["calibration"], **train_sources(out), **_sources_summary(sources)},
    )
    lat = ev.latency_us
    say(
        f"accuracy{' (strict)' if classes == 11 else ''}: float Keras {acc['float']:.4f}, "
        f"float TFLite {acc['float_tflite']:.4f}, int8 via edge_infer {acc['int8']:.4f}"
    )
    if classes == 11:
        say(
            f"not a digit: int8 rejects {acc['int8_digits_rejected']:.2%} of test digits and "
            f"{acc['int8_negatives_rejected']:.2%} of held-out negatives "
            f"(float: {acc['float_digits_rejected']:.2%} / {acc['float_negatives_rejected']:.2%})"
        )
    if "printed_int8" in acc:
        rej = (
            f"; rejected: int8 {acc['printed_int8_rejected']:.2%}, float {acc['printed_float_rejected']:.2%}"
            if classes == 11
            else ""
        )
        say(
            f"held-out printed digits (strict): float Keras {acc['printed_float']:.4f}, "
            f"int8 via edge_infer {acc['printed_int8']:.4f}{rej}"
        )
    if "baseline_int8" in lat:
        say(
            f"int8 latency {lat['int8_tflite']:.1f} us vs baseline int8 {lat['baseline_int8']:.1f} us per digit "
            f"({lat['int8_tflite'] / lat['baseline_int8']:.2f}x)"
        )
    say(f"wrote {report_dir / 'report.md'}")
    return {"accuracy": acc, "latency_us": lat, "sizes": ev.sizes}


def _score_sources(
    int8: Path,
    data: MnistData,
    *,
    printed: tuple[np.ndarray, np.ndarray],
    heldout_displays: int,
    meter_dir: Path | None,
    classes: int,
) -> dict[str, Any] | None:
    """Per-source scores of ``int8`` beside the shipped model it would replace (see :mod:`convert.sources`)."""
    if classes != 11:
        return None
    from convert.sources import score_sources

    meter = None
    if meter_dir is not None:
        from convert.meterdigits import load_meter_digits

        say(f"scoring the meter-digits eval split from {meter_dir} (never trained on)")
        meter = load_meter_digits("eval", meter_dir)
    displays = None
    if heldout_displays:
        from convert.displays import heldout_displays as draw_heldout_displays

        say(f"drawing {heldout_displays} held-out display digits (another seed, DejaVu drums)")
        displays = draw_heldout_displays(heldout_displays)
    shipped = SHIPPED_DIR / "digits_int8.tflite"
    previous = shipped if shipped.is_file() and shipped.read_bytes() != int8.read_bytes() else None
    s = score_sources(
        int8, previous=previous, mnist=(data.x_test, data.y_test), printed=printed, meter=meter, displays=displays
    )
    for key, v in s["rows"]["new"].items():
        before = s["rows"].get("previous", {}).get(key, {})
        fig = "right" if "right" in v else "safe"
        was = f" (before {before[fig]:.2%})" if before.get(fig) is not None else ""
        say(f"{key}: {fig} {v[fig]:.2%} of {v['n']}{was}")
    if "latency_us" in s:
        lat = s["latency_us"]
        say(f"int8 invoke: {lat['new']:.1f} us vs the shipped model's {lat['previous']:.1f} us ({lat['ratio']:.2f}x)")
    return s


def _sources_summary(s: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``accuracy_by_source`` block (the new model's rows)."""
    if not s:
        return {}
    return {"accuracy_by_source": s["rows"]["new"]}


def update_shipped(out: Path, report_dir: Path) -> None:
    """Copy the model, its manifest and its report into the package and docs (atomically)."""
    import shutil

    for name in ("digits_int8.tflite", "digits_int8.json"):
        write_bytes(SHIPPED_DIR / name, (out / name).read_bytes())
    with atomic_dir(DOCS_REPORT) as tmp:
        for f in report_dir.iterdir():
            shutil.copy2(f, tmp / f.name)
    say(f"updated {SHIPPED_DIR / 'digits_int8.tflite'} and {DOCS_REPORT}")
