"""The written conversion report: ``report.md``, ``report.json`` and PNGs.

The figures come from :mod:`convert.evaluate`; latencies are shown as ratios to
the int8 model's own invoke, since absolute times depend on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.data import MnistData
from convert.evaluate import Evaluation

__all__ = ["write_report"]


_LABELS = {
    "float_keras": "float Keras",
    "float_tflite": "float TFLite",
    "int8_edge_infer": "int8 TFLite via edge_infer",
    "int8_tflite": "int8 TFLite (LiteRT invoke)",
    "baseline_int8": "baseline CNN int8",
}
_REJECT_SHORT = "none"  # class 10, "not a digit", in figures


def _cls(c: int) -> str:
    return _REJECT_SHORT if c == 10 else str(c)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def write_report(
    directory: str | os.PathLike[str],
    ev: Evaluation,
    data: MnistData,
    context: dict[str, Any],
) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``directory`` (atomically).

    Args:
        directory: the report directory (replaced as a whole).
        ev: the evaluation.
        data: MNIST, for the pictures of misclassified digits.
        context: facts to record: ``macs``, ``baseline_macs``, ``ops``, ``check``
            (verifier summary), ``edgetpu`` (pre-check / compiler), ``train``
            (config and history), ``command``, ``targets`` thresholds, ...

    Returns:
        The report directory.
    """
    from convert.atomic import atomic_dir, write_json, write_text
    from convert.figures import confusion_png, digit_grid_png, save

    main = "int8_edge_infer"
    acc = {k: ev.accuracy(k) for k in ev.predictions}
    lat = ev.latency_us
    ref = lat.get("int8_tflite")
    ratios = {k: (v / ref if ref else None) for k, v in lat.items()}
    wrong = np.flatnonzero(ev.predictions[main] != ev.y_true)
    size = ev.sizes.get("int8_tflite", 0)
    macs, base_macs = context.get("macs"), context.get("baseline_macs")
    tgt = context.get("targets", {})
    drop_pp = 100 * (acc["float_keras"] - acc[main])
    checks = {
        "int8_accuracy": acc[main] >= tgt.get("min_int8_accuracy", 0.994),
        "float_minus_int8_pp": drop_pp <= tgt.get("max_drop_pp", 0.1),
        "size_bytes": size <= tgt.get("max_size_bytes", 100_000),
        "faster_than_baseline": ("baseline_int8" in lat and ref is not None and ref <= lat["baseline_int8"]),
        "fewer_macs_than_baseline": macs is not None and base_macs is not None and macs < base_macs,
        "batch_resize_consistent": bool(ev.batch_consistent),
    }
    result = {
        "accuracy": acc,
        "per_class_accuracy": {k: ev.per_class(k) for k in ev.predictions},
        "confusion_int8": ev.confusion(main).tolist(),
        "misclassified_int8": len(wrong),
        "classes": ev.classes,
        "latency_us_per_digit": lat,
        "latency_ratio_vs_int8": ratios,
        "sizes_bytes": ev.sizes,
        "targets_met": checks,
        **{
            k: v
            for k, v in context.items()
            if k not in ("history", "negatives_png", "printed_png", "printed_wrong_png", "sources_md", "sources_pngs")
        },
    }
    if ev.printed_true is not None:
        result["printed_digits"] = {
            k: {
                "strict_accuracy": ev.printed_accuracy(k),
                "rejected": ev.printed_rejected(k) if ev.classes == 11 else None,
                "per_digit": ev.printed_per_class(k),
                "heldout_printed": len(ev.printed_predictions[k]),
            }
            for k in ev.printed_predictions
        }
    if ev.classes == 11:
        result["not_a_digit"] = {
            k: {
                "strict_accuracy": ev.accuracy(k),
                "digit_only_accuracy": ev.digit_accuracy(k),
                "digits_rejected": ev.rejected(k),
                "heldout_negatives_rejected": ev.negatives_rejected(k),
                "heldout_negatives": len(ev.negative_predictions.get(k, ())),
            }
            for k in ev.digit_predictions
        }
        result["recognizer_agreement"] = ev.recognizer_agreement

    with atomic_dir(directory) as tmp:
        save(
            tmp / "confusion_int8.png",
            confusion_png(
                ev.confusion(main),
                title="int8 model via edge_infer, MNIST test (10,000)"
                + (" + held-out non-digits" if ev.classes == 11 else ""),
                labels=[_cls(c) for c in range(ev.classes)],
            ),
        )
        shown = wrong[:40]
        caps = [f"{ev.y_true[i]}->{_cls(int(ev.predictions[main][i]))}" for i in shown]
        save(
            tmp / "misclassified_int8.png",
            digit_grid_png(data.x_test[shown], caps, title="misclassified (true->predicted)"),
        )
        if context.get("augmentation_png"):
            save(tmp / "augmentation.png", context["augmentation_png"])
        if context.get("negatives_png"):
            save(tmp / "heldout_negatives.png", context["negatives_png"])
        for name in ("printed", "printed_wrong"):
            if context.get(f"{name}_png"):
                save(tmp / f"heldout_{name}.png", context[f"{name}_png"])
        for fname, png in (context.get("sources_pngs") or {}).items():
            save(tmp / fname, png)
        result.pop("augmentation_png", None)
        write_json(tmp / "report.json", result)
        write_text(tmp / "report.md", _markdown(result, ev, context, has_aug=bool(context.get("augmentation_png"))))
    return Path(directory)


def _markdown(r: dict[str, Any], ev: Evaluation, ctx: dict[str, Any], *, has_aug: bool) -> str:
    acc, lat, ratio, sizes = r["accuracy"], r["latency_us_per_digit"], r["latency_ratio_vs_int8"], r["sizes_bytes"]
    yes = {True: "yes", False: "**NO**"}
    L: list[str] = ["# Conversion report: digits_int8", ""]
    if ctx.get("command"):
        L += [
            f"Produced by `{ctx['command']}` (seed {ctx.get('seed')}, TensorFlow {ctx.get('tensorflow')}, "
            f"{ctx.get('created', '')}).",
            "",
        ]
    L += [
        "## Summary",
        "",
        "| model | MNIST test accuracy"
        + (" (strict)" if ev.classes == 11 else "")
        + " | file size | MACs / digit | latency / digit | vs int8 |",
        "|---|---|---|---|---|---|",
    ]
    size_of = {
        "float_tflite": sizes.get("float_tflite"),
        "int8_edge_infer": sizes.get("int8_tflite"),
        "int8_tflite": sizes.get("int8_tflite"),
        "baseline_int8": sizes.get("baseline_int8"),
    }
    for k in ("float_keras", "float_tflite", "int8_edge_infer", "int8_tflite", "baseline_int8"):
        if k not in acc and k not in lat:
            continue
        a = acc.get(k, acc.get("int8_edge_infer") if k == "int8_tflite" else None)
        mac = ctx.get("baseline_macs") if k == "baseline_int8" else ctx.get("macs")
        sz = size_of.get(k)
        L.append(
            f"| {_LABELS[k]} | {_pct(a)} | {f'{sz:,} B' if sz else '-'} | {f'{mac:,}' if mac else '-'} | "
            f"{f'{lat[k]:.1f} µs' if k in lat else '-'} | {f'{ratio[k]:.2f}x' if ratio.get(k) else '-'} |"
        )
    L += [
        "",
        f"Latency: batch of 1, median of {ctx.get('latency_rounds', 7)} interleaved rounds in one process, "
        f"{ctx.get('num_threads', 1)} interpreter thread(s), LiteRT with XNNPACK; absolute times depend on the "
        "machine and its load, the ratios are what carries over. `int8 TFLite (LiteRT invoke)` and the baseline "
        "are timed the same way (set input, invoke, read output); `via edge_infer` adds `Model.run`'s float "
        "quantisation and checks. Float Keras is a `tf.function` call.",
        "",
    ]
    if "baseline_int8" in acc:
        L += [
            f"The baseline (Conv16-Pool-Conv32-Pool-Dense64-Dense10) is trained only "
            f"{ctx.get('baseline_epochs', 1)} epoch(s) without augmentation: it is here for its speed and size, "
            "its accuracy is not a fair comparison.",
            "",
        ]
    L += ["### Targets", "", "| target | met |", "|---|---|"]
    names = {
        "int8_accuracy": "int8 accuracy >= 99.4%",
        "float_minus_int8_pp": "int8 at most 0.1 pp below float "
        f"(actual {100 * (acc['float_keras'] - acc['int8_edge_infer']):+.2f} pp)".replace("+", ""),
        "size_bytes": "file <= 100 KB",
        "faster_than_baseline": "int8 invoke no slower than baseline int8",
        "fewer_macs_than_baseline": "fewer MACs than the baseline",
        "batch_resize_consistent": "batch-resized invoke == one-by-one invoke",
    }
    L += [f"| {names[k]} | {yes[bool(v)]} |" for k, v in r["targets_met"].items()]
    nad = r.get("not_a_digit")
    if nad:
        L += [
            "",
            "## Not a digit (class 10)",
            "",
            'Strict accuracy is the argmax over all 11 classes (a digit called "not a digit" is an error); '
            "digit-only is the best of 0-9, what `Prediction.digit` reports whatever `is_digit` says. Held-out "
            "negatives are letters, symbols, line fragments and smudges drawn with DejaVu fonts (never used in "
            "training) and another seed, normalised by `edge_infer.image.preprocess.to_mnist`.",
            "",
            "| model | strict accuracy | digit-only accuracy | MNIST digits rejected | held-out non-digits rejected |",
            "|---|---|---|---|---|",
        ]
        for k, v in nad.items():
            L.append(
                f"| {_LABELS[k]} | {_pct(v['strict_accuracy'])} | {_pct(v['digit_only_accuracy'])} | "
                f"{_pct(v['digits_rejected'])} | {_pct(v['heldout_negatives_rejected'])} "
                f"(of {v['heldout_negatives']:,}) |"
            )
        cm = np.asarray(r["confusion_int8"])
        if cm.shape == (11, 11):
            digits_rejected = int(cm[:10, 10].sum())
            neg_total = int(cm[10].sum())
            L += [
                "",
                "Digit vs rejection (int8 via edge_infer):",
                "",
                "| true \\ predicted | a digit | not a digit |",
                "|---|---|---|",
                f"| MNIST digit | {int(cm[:10, :10].sum()):,} | {digits_rejected:,} |",
                f"| held-out non-digit | {neg_total - int(cm[10, 10]):,} | {int(cm[10, 10]):,} |",
                "",
                "Non-digits accepted, by the digit they were read as: "
                + (", ".join(f"{d}: {int(cm[10, d])}" for d in range(10) if cm[10, d]) or "none")
                + ".",
            ]
        agree = r.get("recognizer_agreement")
        L += [
            "",
            "`DigitRecognizer.classify_batch` agreement with this scoring: "
            + (_pct(agree) if agree is not None else "not checked (the runtime could not load the model)")
            + ".",
        ]
        if ctx.get("negatives_png"):
            L += [
                "",
                "Held-out non-digits, as the model sees them:",
                "",
                "![held-out negatives](heldout_negatives.png)",
            ]
    L += _printed_section(r, ev, ctx)
    L += ctx.get("sources_md") or []
    L += [
        "",
        "## Per-class accuracy",
        "",
        "| digit | " + " | ".join(_LABELS[k] for k in ev.predictions) + " |",
        "|---|" + "---|" * len(ev.predictions),
    ]
    for c in range(10):
        L.append(f"| {c} | " + " | ".join(_pct(r["per_class_accuracy"][k][c]) for k in ev.predictions) + " |")
    L += [
        "",
        "## Confusion matrix (int8 via edge_infer)",
        "",
        *(
            ["Row and column `none` are class 10, not a digit; its row is the held-out non-digits.", ""]
            if ev.classes == 11
            else []
        ),
        "![confusion matrix](confusion_int8.png)",
        "",
        f"## Misclassified digits ({r['misclassified_int8']} of {len(ev.y_true)}; first 40)",
        "",
        "![misclassified](misclassified_int8.png)",
        "",
    ]
    chk = ctx.get("check", {})
    L += [
        "## The int8 model",
        "",
        f"- input `{chk.get('input_shape')}` {chk.get('input_dtype')}, scale {chk.get('input_scale')}, "
        f"zero point {chk.get('input_zero_point')} (float [0, 1] in)",
        f"- output `{chk.get('output_shape')}` {chk.get('output_dtype')} softmax, scale {chk.get('output_scale')}, "
        f"zero point {chk.get('output_zero_point')}"
        + (" (classes 0-9, then 10 = not a digit)" if ev.classes == 11 else ""),
        "- verifier: fully integer (every tensor int8, int32 only for biases and shape constants, no float op, "
        "static shapes)",
        f"- ops ({len(ctx.get('ops', []))}): " + ", ".join(f"`{o}`" for o in ctx.get("ops", [])),
        f"- batch-resizable: {yes[bool(ev.batch_consistent)]}",
        "",
    ]
    et = ctx.get("edgetpu", {})
    L += ["## Edge TPU", ""] + [f"    {line}" for line in et.get("precheck", [])] + [""]
    comp = et.get("compiled")
    if comp:
        L += [
            f"Compiled with edgetpu_compiler {comp.get('compiler_version')}: {comp.get('ops_on_tpu')} of "
            f"{comp.get('total_ops')} ops on the Edge TPU, {comp.get('subgraphs')} subgraph(s), on-chip "
            f"{comp.get('on_chip_memory')}, off-chip {comp.get('off_chip_memory')}.",
            "",
            "| op | count | status |",
            "|---|---|---|",
        ]
        L += [f"| {o['op']} | {o['count']} | {o['status']} |" for o in comp.get("operators", [])]
        L.append("")
    elif et.get("note"):
        L += [et["note"], ""]
    tr = ctx.get("train", {})
    if tr:
        L += [
            "## Training",
            "",
            f"- {tr.get('epochs')} epoch(s), batch {tr.get('batch_size')}, seed {tr.get('seed')}, "
            f"{tr.get('train_images')} training images"
            + (f" + {tr['printed']:,} printed digits (Liberation + Hershey fonts)" if tr.get("printed") else "")
            + (f" + {tr['negatives']:,} non-digit negatives (class 10)" if tr.get("negatives") else "")
            + f", {tr.get('val_images')} held out for validation; the test set is used only here.",
            f"- final validation accuracy (float, MNIST validation digits"
            f"{', strict' if ev.classes == 11 else ''}): {_pct(tr.get('final_val_acc'))}",
            f"- calibration: {ctx.get('calibration')} training images",
            f"- data: {ctx.get('data_source')}",
            "",
        ]
        if has_aug:
            L += [
                "Camera-crop augmentation (top: MNIST, bottom: what training saw):",
                "",
                "![augmentation](augmentation.png)",
                "",
            ]
    return "\n".join(L) + "\n"


def _printed_section(r: dict[str, Any], ev: Evaluation, ctx: dict[str, Any]) -> list[str]:
    """Markdown lines for the held-out printed digits (none when they were not scored)."""
    pd = r.get("printed_digits")
    if not pd:
        return []
    reject = ev.classes == 11
    L = [
        "",
        "## Printed digits (held out)",
        "",
        "Digits 0-9 drawn with the DejaVu fonts (never used in training: training draws printed digits with "
        "Liberation and Hershey) and another seed, by the same renderer as the negatives, normalised by "
        "`edge_infer.image.preprocess.to_mnist`. Scored strictly"
        + (': a printed digit called "not a digit" is an error.' if reject else "."),
        "",
        "| model | strict accuracy |" + (" rejected as not a digit |" if reject else ""),
        "|---|---|" + ("---|" if reject else ""),
    ]
    for k, v in pd.items():
        L.append(
            f"| {_LABELS[k]} | {_pct(v['strict_accuracy'])} (of {v['heldout_printed']:,}) |"
            + (f" {_pct(v['rejected'])} |" if reject else "")
        )
    main = pd.get("int8_edge_infer")
    if main:
        L += [
            "",
            "Per digit (int8 via edge_infer): "
            + ", ".join(f"{d}: {_pct(a)}" for d, a in enumerate(main["per_digit"]))
            + ".",
        ]
    if ctx.get("printed_png"):
        L += ["", "Held-out printed digits, as the model sees them:", "", "![held-out printed](heldout_printed.png)"]
    if ctx.get("printed_wrong_png"):
        L += ["", "Misread (first 40, int8):", "", "![misread printed digits](heldout_printed_wrong.png)"]
    return L
