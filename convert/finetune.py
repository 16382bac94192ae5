"""Fine-tune the shipped int8 model on a user's own labelled digit crops: ``python -m convert finetune``.

::

    python -m convert finetune --images crops/ --out runs/finetune/water

``--images DIR`` holds crops filed by label: ``DIR/0`` .. ``DIR/9`` and ``DIR/n`` ("not a digit":
a drum between two digits, a blank), as ``edge-infer meter label DIR`` leaves them. The steps:

1. The crops are normalised with the runtime's own :func:`edge_infer.to_mnist` (what
   ``DigitRecognizer.classify`` does with a crop), and a share of them (``--holdout``, stratified,
   seeded) is kept apart to score the result.
2. The starting model is the int8 ``.tflite`` itself (``--model``, default the shipped one): its
   graph (convolutions, depthwise convolutions, pooling, mean, dense, softmax) is rebuilt as a
   float Keras model with its dequantised weights (:func:`keras_from_tflite`; batch
   normalisation is already folded into the convolutions).
3. It is trained with :func:`convert.train.train` on the user's crops (``--repeat`` times each,
   with the camera augmentation) mixed with a share of its own training data so that it forgets
   nothing: MNIST digits (``--mnist``), printed digits and negatives ("not a digit"), at a low
   learning rate for a few epochs.
4. So that MNIST does not suffer, the weights are moved back towards the starting model's
   (``a * tuned + (1 - a) * start``, largest ``a`` first) until the MNIST *validation* accuracy is
   within ``--max-mnist-drop`` of where it started (the test split is only ever scored).
5. It is quantised with :func:`convert.quantize.to_int8_tflite` and checked with
   :func:`convert.quantize.verify_fully_integer`; the model and its manifest are written
   atomically (``digits_int8.tflite`` + ``.json``).
6. Before/after: strict accuracy on the held-out crops and on the 10,000 MNIST test digits, both
   models run through ``edge_infer`` (the device's runtime); printed and written to
   ``finetune.json``. Point the meter config's ``model`` at the new file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from convert.errors import ConvertError, DataError

__all__ = ["FinetuneResult", "finetune", "keras_from_tflite", "load_labelled", "main", "score", "split_holdout"]

log = logging.getLogger(__name__)

LABEL_DIRS = {str(d): d for d in range(10)} | {"n": 10, "N": 10, "10": 10}
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm")


# --------------------------------------------------------------------------- data


def load_labelled(root: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads ``root/<label>/*`` crops and normalises them as the runtime does.

    Returns:
        ``(x, y, paths)``: uint8 ``(N, 28, 28)`` white on black, labels (10 = not a digit), sorted paths.

    Raises:
        DataError: No labelled crop, or one that cannot be read.
    """
    from edge_infer import to_mnist
    from edge_infer.image.io import read_image

    root = Path(root)
    items = []
    for name, label in LABEL_DIRS.items():
        d = root / name
        if d.is_dir():
            items += [(p, label) for p in sorted(d.iterdir()) if p.suffix.lower() in _IMAGE_EXTS]
    if not items:
        raise DataError(f"{root}: no labelled crops; expected folders 0..9 and n with images in them")
    items.sort(key=lambda t: str(t[0]))
    x = np.zeros((len(items), 28, 28), np.uint8)
    for i, (p, _) in enumerate(items):
        try:
            x[i] = to_mnist(read_image(p))
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: cannot read this crop ({e})") from None
    y = np.array([lab for _, lab in items], np.uint8)
    return x, y, [str(p) for p, _ in items]


def split_holdout(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, held out)``: ``share`` of each label held out (at least one when it has two).

    >>> tr, ho = split_holdout(np.array([0, 0, 0, 0, 1, 1, 10]), 0.25, 0)
    >>> sorted(np.concatenate([tr, ho]).tolist()) == list(range(7)), len(ho)
    (True, 2)
    """
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        k = int(round(len(idx) * share)) if len(idx) > 1 else 0
        k = max(k, 1) if len(idx) > 1 and share > 0 else k
        held += idx[:k].tolist()
        train += idx[k:].tolist()
    return np.array(sorted(train), np.int64), np.array(sorted(held), np.int64)


# --------------------------------------------------------------------------- tflite -> keras


def _builtin_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _dequantised(model: Any, index: int) -> np.ndarray:
    t = model.subgraphs[0].tensors[index]
    buf = model.buffers[t.buffer].data
    if buf is None:
        raise ConvertError(f"tensor {t.name!r} has no constant data")
    dtype = {9: np.int8, 2: np.int32, 0: np.float32, 3: np.uint8}.get(t.type)
    if dtype is None:
        raise ConvertError(f"tensor {t.name!r} has type {t.type}, which cannot be read back")
    arr = np.frombuffer(np.asarray(buf, np.uint8).tobytes(), dtype).reshape(t.shape)
    q = t.quantization
    if dtype == np.float32 or q is None or q.scale is None or len(q.scale) == 0:
        return arr.astype(np.float32)
    scale = np.asarray(q.scale, np.float32)
    zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.float32)
    if scale.size > 1:
        shape = [1] * arr.ndim
        shape[q.quantizedDimension] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape) if zero.size > 1 else zero
    return (arr.astype(np.float32) - zero) * scale


_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}
_PADDING = {0: "same", 1: "valid"}


def keras_from_tflite(path: str | os.PathLike[str]) -> Any:
    """Rebuilds a chain-shaped int8 TFLite classifier as a float Keras model with its dequantised weights.

    Supported ops: CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D, MEAN (over height and
    width), FULLY_CONNECTED, SOFTMAX, RESHAPE (to a vector), QUANTIZE/DEQUANTIZE (skipped): the
    ops the shipped models are made of.

    Returns:
        An uncompiled ``keras.Model``, float ``(N, 28, 28, 1)`` in [0, 1] -> probabilities.

    Raises:
        ConvertError: An op it does not know, or a graph that is not a chain.
    """
    import keras
    from keras import layers
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = _builtin_names()
    sub = model.subgraphs[0]
    x = inp = keras.Input(tuple(int(d) for d in sub.tensors[sub.inputs[0]].shape[1:]), name="image")
    current = sub.inputs[0]
    for k, op in enumerate(sub.operators):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
        if op.inputs[0] != current:
            raise ConvertError(f"{path}: op {k} ({name}) does not follow the previous one; only chains are rebuilt")
        o = op.builtinOptions
        act = _ACTIVATIONS.get(getattr(o, "fusedActivationFunction", 0), "unsupported")
        if act == "unsupported":
            raise ConvertError(f"{path}: op {k} ({name}) has a fused activation this rebuild does not know")
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        if name == "CONV_2D":
            w = _dequantised(model, op.inputs[1])  # (out, kh, kw, in)
            layer = layers.Conv2D(
                w.shape[0],
                w.shape[1:3],
                strides=(o.strideH, o.strideW),
                padding=_PADDING[o.padding],
                activation=act,
                use_bias=has_bias,
            )
            x = layer(x)
            layer.set_weights([w.transpose(1, 2, 3, 0)] + ([_dequantised(model, op.inputs[2])] if has_bias else []))
        elif name == "DEPTHWISE_CONV_2D":
            w = _dequantised(model, op.inputs[1])  # (1, kh, kw, c * mult)
            mult = int(o.depthMultiplier) or 1
            c = w.shape[3] // mult
            layer = layers.DepthwiseConv2D(
                w.shape[1:3],
                strides=(o.strideH, o.strideW),
                padding=_PADDING[o.padding],
                depth_multiplier=mult,
                activation=act,
                use_bias=has_bias,
            )
            x = layer(x)
            kernel = w[0].reshape(w.shape[1], w.shape[2], c, mult)
            layer.set_weights([kernel] + ([_dequantised(model, op.inputs[2])] if has_bias else []))
        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            cls = layers.MaxPooling2D if name == "MAX_POOL_2D" else layers.AveragePooling2D
            x = cls((o.filterHeight, o.filterWidth), strides=(o.strideH, o.strideW), padding=_PADDING[o.padding])(x)
            if act:
                x = layers.Activation(act)(x)
        elif name == "MEAN":
            axes = sorted(int(a) for a in _dequantised(model, op.inputs[1]).ravel())
            if axes != [1, 2]:
                raise ConvertError(f"{path}: MEAN over axes {axes}; only the spatial mean is rebuilt")
            x = layers.GlobalAveragePooling2D(keepdims=bool(getattr(o, "keepDims", False)))(x)
        elif name == "FULLY_CONNECTED":
            w = _dequantised(model, op.inputs[1])  # (out, in)
            if len(x.shape) > 2:
                x = layers.Flatten()(x)
            layer = layers.Dense(w.shape[0], activation=act, use_bias=has_bias)
            x = layer(x)
            layer.set_weights([w.T] + ([_dequantised(model, op.inputs[2])] if has_bias else []))
        elif name == "SOFTMAX":
            x = layers.Softmax(name="probs")(x)
        elif name == "RESHAPE":
            x = layers.Flatten()(x)
        elif name in ("QUANTIZE", "DEQUANTIZE"):
            pass
        else:
            raise ConvertError(f"{path}: op {k} is {name}, which keras_from_tflite does not rebuild")
        current = op.outputs[0]
    return keras.Model(inp, x, name="digits_finetuned")


# --------------------------------------------------------------------------- forgetting nothing


def _val_accuracy(model: Any, x01: np.ndarray, y: np.ndarray) -> float:
    """Strict accuracy of a Keras model on the MNIST validation split (never the test split)."""
    return float((model.predict(x01, batch_size=1000, verbose=0).argmax(axis=1) == y).mean())


def _interpolate(model: Any, start: list[np.ndarray], x01: np.ndarray, y: np.ndarray, *, floor: float) -> float:
    """Moves the fine-tuned weights back towards the starting ones until MNIST validation holds ``floor``.

    The weights become ``a * tuned + (1 - a) * start`` for the largest ``a`` on a grid (1.0 first)
    whose validation accuracy is at least ``floor`` (weight-space ensembling: most of what was
    learnt from the crops stays, what was forgotten comes back). Returns ``a``; 0.0 is the start.
    """
    tuned = [w.copy() for w in model.get_weights()]
    for a in (1.0, 0.85, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0):
        model.set_weights([a * t + (1 - a) * s for t, s in zip(tuned, start)])
        acc = _val_accuracy(model, x01, y)
        log.info("weights %.2f tuned + %.2f start: MNIST validation %.4f (floor %.4f)", a, 1 - a, acc, floor)
        if acc >= floor:
            return a
    return 0.0


# --------------------------------------------------------------------------- scoring


def score(path: str | os.PathLike[str], x: np.ndarray, y: np.ndarray) -> float:
    """Strict accuracy of a ``.tflite`` through ``edge_infer`` (argmax over all classes; 10 = not a digit)."""
    from edge_infer import load_model

    if not len(x):
        return float("nan")
    x01 = (x.astype(np.float32) / 255.0)[..., None]
    with load_model(path, delegate="cpu") as m:
        probs = np.concatenate([m.run(x01[s : s + 1000]) for s in range(0, len(x01), 1000)])
    return float((probs.argmax(axis=1) == y).mean())


@dataclass(frozen=True)
class FinetuneResult:
    """What :func:`finetune` wrote and measured.

    Attributes:
        model: The new int8 model; its manifest is beside it (``.json``).
        before, after: Strict accuracy on the held-out crops, of the starting and the new model.
        mnist_before, mnist_after: Strict accuracy on the 10,000 MNIST test digits.
        train_crops, heldout_crops: How many of the user's crops went each way.
        alpha: Share of the fine-tuned weights kept (the rest is the starting model's).
    """

    model: Path
    before: float
    after: float
    mnist_before: float
    mnist_after: float
    train_crops: int
    heldout_crops: int
    alpha: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = str(self.model)
        return d


def finetune(
    images: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] | None = None,
    holdout: float = 0.3,
    epochs: int = 4,
    learning_rate: float = 1e-3,
    repeat: int = 15,
    mnist: int = 25000,
    seed: int = 1234,
    mnist_path: str | os.PathLike[str] | None = None,
    max_mnist_drop: float = 0.001,
    train_layers: int | None = None,
) -> FinetuneResult:
    """Fine-tunes a model on labelled crops (see the module docstring).

    Args:
        images: The labelled crops folder.
        out: Output folder (``digits_int8.tflite``, ``digits_int8.json``, ``finetune.json``).
        model: The starting int8 model (default: the shipped one).
        holdout: Share of each label's crops kept apart to score before/after.
        epochs: Training passes.
        learning_rate: Peak learning rate (an eighth of a from-scratch run's).
        repeat: Times each training crop is seen per epoch.
        mnist: MNIST training digits mixed in (printed digits and negatives follow the usual shares).
        seed: Seeds the split, the mix and the training.
        mnist_path: MNIST file or folder (default: the usual offline sources).
        max_mnist_drop: Most the MNIST validation accuracy may fall; beyond it the weights are
            moved back towards the starting model's (see :func:`_interpolate`).
        train_layers: Train only the last N layers with weights (None: all of them).

    Raises:
        DataError: No crops, or no MNIST.
        ConvertError: The model cannot be rebuilt, quantised or verified.
    """
    from convert.atomic import write_bytes, write_json
    from convert.data import MnistData, load_mnist
    from convert.quantize import to_int8_tflite, verify_fully_integer
    from convert.train import TrainConfig, train
    from edge_infer.runtime.modelfile import shipped_model_path

    base = Path(model) if model is not None else shipped_model_path()
    if not base.is_file():
        raise ConvertError(f"--model {base}: no such model")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, _paths = load_labelled(images)
    tr, ho = split_holdout(y, holdout, seed)
    log.info("%d labelled crops: %d to train on, %d held out", len(y), len(tr), len(ho))
    data = load_mnist(mnist_path, download=False)

    before = score(base, x[ho], y[ho])
    mnist_before = score(base, data.x_test, data.y_test)
    log.info("before: held-out crops %.4f, MNIST %.4f", before, mnist_before)

    keras_model = keras_from_tflite(base)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(data.x_train), size=min(mnist, len(data.x_train)), replace=False)
    mix_x = np.concatenate([data.x_train[pick], *[x[tr]] * repeat])
    mix_y = np.concatenate([data.y_train[pick], *[y[tr].astype(data.y_train.dtype)] * repeat])
    mixed = MnistData(mix_x, mix_y, data.x_val, data.y_val, data.x_test, data.y_test, f"{data.source} + {images}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings: dict[str, Any] = {
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
        "reject_class": True,
        "printed": mnist // 6,
        "negatives": None,
        "displays": 0,
        "meter_dir": None,
        "verbose": 0,
    }
    cfg = TrainConfig(**{k: v for k, v in settings.items() if k in fields})
    classes = int(keras_model.output_shape[-1])
    if classes != cfg.classes:
        raise ConvertError(f"{base} has {classes} outputs; fine-tuning needs the 11-class model (0-9, not a digit)")
    weighted = [layer for layer in keras_model.layers if layer.weights]
    if train_layers is not None:  # keep the early feature layers as they are
        for layer in weighted[: max(0, len(weighted) - train_layers)]:
            layer.trainable = False
    start = [w.copy() for w in keras_model.get_weights()]
    x_val01 = (data.x_val.astype(np.float32) / 255.0)[..., None]
    val_before = _val_accuracy(keras_model, x_val01, data.y_val)
    t0 = time.monotonic()
    keras_model, history = train(mixed, cfg, model=keras_model)
    log.info("trained in %.0f s; val_acc %s", time.monotonic() - t0, history.get("val_acc"))
    alpha = _interpolate(keras_model, start, x_val01, data.y_val, floor=val_before - max_mnist_drop)

    rep = np.concatenate([data.x_train[pick[:800]], x[tr][:200]])
    blob = to_int8_tflite(keras_model, rep)
    verify_fully_integer(blob)
    target = out / "digits_int8.tflite"
    write_bytes(target, blob)
    after = score(target, x[ho], y[ho])
    mnist_after = score(target, data.x_test, data.y_test)
    result = FinetuneResult(target, before, after, mnist_before, mnist_after, len(tr), len(ho), alpha)

    manifest_path = base.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    manifest.update(
        name="digits_int8",
        file=target.name,
        sha256=hashlib.sha256(blob).hexdigest(),
        size_bytes=len(blob),
        created=time.strftime("%Y-%m-%d"),
        command="python -m convert finetune " + " ".join(sys.argv[1:]) if sys.argv[1:] else "convert.finetune",
        finetune={
            "base_model": str(base),
            "base_sha256": hashlib.sha256(base.read_bytes()).hexdigest(),
            "images": str(images),
            "epochs": epochs,
            "learning_rate": learning_rate,
            "mnist_mixed_in": int(len(pick)),
            **{k: v for k, v in result.to_dict().items() if k != "model"},
        },
    )
    acc = dict(manifest.get("accuracy", {}))
    acc.update(dataset="MNIST test (10,000)", int8=mnist_after, heldout_user_crops=after)
    manifest["accuracy"] = acc
    write_json(out / "digits_int8.json", manifest)
    write_json(out / "finetune.json", result.to_dict())
    return result


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m convert finetune``: prints the before/after figures; exit 2 on bad input."""
    ap = argparse.ArgumentParser(prog="python -m convert finetune", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", required=True, metavar="DIR", help="labelled crops: DIR/0..9 and DIR/n")
    ap.add_argument("--out", default="runs/finetune", help="output folder (default runs/finetune)")
    ap.add_argument("--model", default=None, help="starting int8 model (default: the shipped one)")
    ap.add_argument("--holdout", type=float, default=0.3, help="share of crops held out to score (default 0.3)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--learning-rate", type=float, default=1e-3)
    ap.add_argument("--repeat", type=int, default=15, help="times each crop is seen per epoch")
    ap.add_argument("--mnist", type=int, default=25000, help="MNIST training digits mixed in")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--train-layers", type=int, default=None, help="train only the last N weight layers")
    ap.add_argument(
        "--max-mnist-drop",
        type=float,
        default=0.001,
        help="most the MNIST validation accuracy may fall (default 0.001)",
    )
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        r = finetune(
            a.images,
            a.out,
            model=a.model,
            holdout=a.holdout,
            epochs=a.epochs,
            learning_rate=a.learning_rate,
            repeat=a.repeat,
            mnist=a.mnist,
            seed=a.seed,
            max_mnist_drop=a.max_mnist_drop,
            train_layers=a.train_layers,
        )
    except (ConvertError, OSError) as e:
        print(f"convert.finetune: {e}", file=sys.stderr)
        return 2
    print(f"held-out crops ({r.heldout_crops}): {r.before:.2%} -> {r.after:.2%}")
    print(f"MNIST test (10,000):  {r.mnist_before:.2%} -> {r.mnist_after:.2%}")
    print(f"kept {r.alpha:.0%} of the fine-tuned weights (the rest is the starting model's)")
    print(f'wrote {r.model} and its manifest; set model = "{r.model}" in the meter config')
    return 0


if __name__ == "__main__":
    sys.exit(main())
