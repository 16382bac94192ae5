"""Model definition, camera-crop augmentation and training (TensorFlow / Keras).

The network is built from the operations that survive full-integer quantisation
and map onto the Edge TPU: 3x3 convolutions, depthwise-separable blocks, max
pooling, ReLU, a global average pool, one fully connected layer and a softmax.
Batch normalisation is folded into the convolutions when the model is converted.
The global average pool (a TFLite MEAN) keeps the exported graph free of a
constant-shape RESHAPE, so the batch-1 graph can still be resized to a batch of N.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.data import MnistData

__all__ = [
    "TrainConfig",
    "augment_batch",
    "build_baseline",
    "build_model",
    "count_macs",
    "make_strategy",
    "train",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are those of the shipped model.

    Attributes:
        epochs: passes over the training split.
        batch_size: global batch size (divided across replicas); None picks
            ``n // 150`` (a multiple of 8) clamped to 32..128, so that even a small slice gets
            enough steps per epoch.
        limit: train on only the first ``limit`` training images (quick runs).
        seed: seeds Python, NumPy, TensorFlow and the augmentation.
        learning_rate: peak learning rate (linear warm-up over the first tenth,
            then cosine decay).
        width: channel multiplier of the network.
        augment: apply camera-crop augmentation (to digits and negatives alike).
        reject_class: add an 11th class, "not a digit" (index 10), trained on
            negatives from :func:`convert.negatives.make_negatives`.
        negatives: how many negatives; None draws one per 7 training digits
            (MNIST and printed together: the class keeps its share of the set).
        printed: how many printed digits (labelled 0-9) from
            :func:`convert.printed.make_printed`; None draws one per 6 MNIST
            training digits, 0 draws none.
        fonts: extra font files or directories for the negatives and the printed
            digits (DejaVu is skipped).
        displays: how many display digits (seven-segment LCD/LED, counter drums,
            dot matrix, 14-segment, special printed faces; drums between two digits
            labelled 10) from :func:`convert.displays.make_displays`; None draws one
            per 4 MNIST training digits, 0 draws none.
        meter_dir: the meter-digits folder (:mod:`convert.meterdigits`): its ``train``
            split (never ``eval``) is added, ``meter_repeat`` times; None adds none.
        meter_repeat: how many times each meter-digits training crop is seen per epoch.
        rolling_as: what a counter drum between two digits (meter-digits label ``N``, a
            drawn drum more than 0.2 from a digit) is trained as: ``"nearest"``, the nearer
            of its two digits (both are safe answers for a meter reader, and the model need
            not judge 0.2 from 0.3 of a digit's height, which the normalisation mostly
            erases); ``"near"``, the nearer digit when within 0.35 of it and class 10 in the
            middle of the roll; ``"reject"``, class 10. A blank drum stays class 10 always.
        verbose: Keras progress output (0 silent, 1 bar, 2 one line per epoch).
    """

    epochs: int = 25
    batch_size: int | None = None
    limit: int | None = None
    seed: int = 1234
    learning_rate: float = 8e-3
    width: float = 1.0
    augment: bool = True
    reject_class: bool = True
    negatives: int | None = None
    printed: int | None = None
    fonts: tuple[str, ...] = ()
    displays: int | None = None
    meter_dir: str | None = None
    meter_repeat: int = 2
    rolling_as: str = "near"
    verbose: int = 2

    @property
    def classes(self) -> int:
        """Output classes: 11 with the "not a digit" class, else 10."""
        return 11 if self.reject_class else 10

    def printed_for(self, n_mnist: int) -> int:
        """Printed digits drawn beside ``n_mnist`` MNIST training digits.

        >>> TrainConfig().printed_for(50_000), TrainConfig(printed=0).printed_for(50_000)
        (8333, 0)
        """
        return self.printed if self.printed is not None else n_mnist // 6

    def displays_for(self, n_mnist: int) -> int:
        """Display digits drawn beside ``n_mnist`` MNIST training digits.

        >>> TrainConfig().displays_for(50_000), TrainConfig(displays=0).displays_for(50_000)
        (12500, 0)
        """
        return self.displays if self.displays is not None else n_mnist // 4

    def negatives_for(self, n_digits: int) -> int:
        """Negatives drawn for ``n_digits`` training digits, MNIST and printed (0 without the reject class).

        >>> TrainConfig().negatives_for(50_000), TrainConfig(reject_class=False).negatives_for(50_000)
        (7142, 0)
        """
        if not self.reject_class:
            return 0
        return self.negatives if self.negatives is not None else n_digits // 7


def make_strategy() -> Any:
    """A ``tf.distribute`` strategy: mirrored over GPUs when there are several, else default."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    return tf.distribute.get_strategy()


def build_model(width: float = 1.0, *, classes: int = 11, name: str = "digits") -> Any:
    """The shipped architecture (about 0.76 M MACs and 18 k parameters per digit).

    ``conv3x3/2 (32) -> dwsep (32) -> maxpool -> dwsep (64) -> dwsep (96) ->
    global depthwise 7x7 -> MEAN -> dense (11) -> softmax``.

    The stride-2 stem replaces a full-resolution layer plus pooling. The head
    is a "global depthwise convolution": a 7x7 depthwise kernel over the whole
    7x7 map learns a weighted pool per channel, so where a stroke is still
    counts (plain averaging forgets it), for 49 weights per channel. The MEAN
    that follows only drops the two unit spatial axes, which keeps the graph
    free of a constant-shape RESHAPE and so resizable to a batch of N.

    Args:
        width: channel multiplier.
        classes: 11 (digits 0-9 and "not a digit" at index 10) or 10.
        name: Keras model name.

    Returns:
        An uncompiled ``keras.Model`` mapping float ``(N, 28, 28, 1)`` in [0, 1]
        to softmax probabilities ``(N, classes)``.
    """
    import keras
    from keras import layers

    def ch(c: int) -> int:
        return max(8, round(c * width / 8) * 8)

    def bn(x: Any) -> Any:
        # momentum 0.9: the running statistics settle within ~50 steps, so short runs evaluate sanely
        return layers.BatchNormalization(momentum=0.9)(x)

    def conv_bn(x: Any, filters: int, *, kernel: int = 3, strides: int = 1) -> Any:
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
        return layers.ReLU()(bn(x))

    def dwsep(x: Any, filters: int) -> Any:
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(bn(x))
        return conv_bn(x, filters, kernel=1)

    inp = keras.Input((28, 28, 1), name="image")
    x = conv_bn(inp, ch(32), strides=2)  # 14x14
    x = dwsep(x, ch(32))
    x = layers.MaxPooling2D(2)(x)  # 7x7
    x = dwsep(x, ch(64))
    x = dwsep(x, ch(96))
    x = layers.DepthwiseConv2D(7, padding="valid", use_bias=False, name="global_depthwise")(x)  # 1x1
    x = bn(x)
    x = layers.GlobalAveragePooling2D()(x)  # (N, C): a MEAN over the 1x1 map
    x = layers.Dense(classes)(x)
    out = layers.Softmax(name="probs")(x)
    return keras.Model(inp, out, name=name)


def build_baseline() -> Any:
    """The plain reference CNN: Conv16-Pool-Conv32-Pool-Dense64-Dense10 (softmax).

    The flatten is written as a ``Reshape((-1,))`` of the pooled map's known
    size, which is what a tutorial's ``Flatten`` exports to.
    """
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dense(10)(x)
    out = layers.Softmax(name="probs")(x)
    return keras.Model(inp, out, name="baseline")


def count_macs(model: Any) -> int:
    """Multiply-accumulates for one digit: convolutions, depthwise convolutions, dense.

    Pooling, ReLU, softmax and the average pool are counted as free (they are
    comparisons or additions, a small fraction of the total).
    """
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            kh, kw = layer.kernel_size
            total += h * w * c * kh * kw
        elif isinstance(layer, layers.Conv2D):
            _, h, w, cout = layer.output.shape
            cin = layer.input.shape[-1]
            kh, kw = layer.kernel_size
            total += h * w * cout * cin * kh * kw
        elif isinstance(layer, layers.Dense):
            total += int(layer.input.shape[-1]) * int(layer.units)
    return int(total)


# --------------------------------------------------------------------------- augmentation


def augment_batch(x: Any, seed: Any) -> Any:
    """Distort a batch of MNIST-normalised digits the way camera crops differ from MNIST.

    The runtime already normalises each crop (white digit on black, 20 px box,
    centre of mass centred), so the distortions are the residue of that:
    small rotations, shifts and scalings, thinner or thicker strokes, blur,
    weaker contrast, a raised black level and sensor noise. Every random draw is
    stateless, from ``seed``, so a run is reproducible.

    Args:
        x: float32 ``(N, 28, 28, 1)`` in [0, 1].
        seed: int32/int64 tensor of shape ``(2,)``.

    Returns:
        A float32 batch of the same shape, in [0, 1].
    """
    import tensorflow as tf

    n = tf.shape(x)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=14)

    def uni(i: int, lo: float, hi: float, shape: Any = None) -> Any:
        s = shape if shape is not None else tf.stack([n])
        return tf.random.stateless_uniform(s, seeds[i], lo, hi)

    # Stroke thickness: a 2x2 max (dilate) or min (erode) filter on a share of the batch.
    choice = uni(0, 0.0, 1.0)
    dil = tf.nn.max_pool2d(x, 2, 1, "SAME")
    ero = -tf.nn.max_pool2d(-x, 2, 1, "SAME")
    c = tf.reshape(choice, [-1, 1, 1, 1])
    x = tf.where(c < 0.15, dil, tf.where(c > 0.9, ero, x))

    # Affine: rotation, anisotropic scale, shear, shift, about the image centre.
    ang = uni(1, -12.0, 12.0) * (math.pi / 180.0)
    sx = uni(2, 0.88, 1.12)
    sy = sx * uni(3, 0.94, 1.06)
    sh = uni(4, -0.12, 0.12)
    tx = uni(5, -1.5, 1.5)
    ty = uni(6, -1.5, 1.5)
    cos, sin = tf.cos(ang), tf.sin(ang)
    # forward map A = R @ [[sx, sh], [0, sy]]; the transform op wants output->input, so invert.
    a00, a01 = cos * sx, cos * sh - sin * sy
    a10, a11 = sin * sx, sin * sh + cos * sy
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    cx = cy = 13.5
    # input = inv @ (out - c - t) + c
    b0 = cx - (i00 * (cx + tx) + i01 * (cy + ty))
    b1 = cy - (i10 * (cx + tx) + i11 * (cy + ty))
    zeros = tf.zeros_like(i00)
    transforms = tf.stack([i00, i01, b0, i10, i11, b1, zeros, zeros], axis=1)
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=x,
        transforms=transforms,
        output_shape=tf.constant([28, 28]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )

    # Blur on a share of the batch: a 3x3 Gaussian of random strength.
    sigma = uni(7, 0.4, 1.0)
    k = tf.exp(-tf.constant([1.0, 0.0, 1.0])[None, :] / (2.0 * sigma[:, None] ** 2))  # (N, 3)
    k = k / tf.reduce_sum(k, axis=1, keepdims=True)
    xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    kv = tf.reshape(k, [-1, 1, 1, 1, 3])
    rows = kv[..., 0] * xp[:, 0:28, :, :] + kv[..., 1] * xp[:, 1:29, :, :] + kv[..., 2] * xp[:, 2:30, :, :]
    blurred = kv[..., 0] * rows[:, :, 0:28, :] + kv[..., 1] * rows[:, :, 1:29, :] + kv[..., 2] * rows[:, :, 2:30, :]
    x = tf.where(tf.reshape(uni(12, 0.0, 1.0), [-1, 1, 1, 1]) < 0.3, blurred, x)

    # Contrast and black level, on half the batch: the stroke peak drops, the background rises.
    photo = tf.reshape(tf.cast(uni(8, 0.0, 1.0) < 0.5, tf.float32), [-1, 1, 1, 1])
    lo = tf.reshape(uni(9, 0.0, 0.1), [-1, 1, 1, 1]) * photo
    hi = 1.0 - tf.reshape(uni(10, 0.0, 0.35), [-1, 1, 1, 1]) * photo
    x = lo + (hi - lo) * x
    # Sensor noise of random strength, on the same half.
    sd = tf.reshape(uni(11, 0.0, 0.05), [-1, 1, 1, 1]) * photo
    x = x + sd * tf.random.stateless_normal(tf.shape(x), seeds[13])
    return tf.clip_by_value(x, 0.0, 1.0)


#: ``rolling_as="near"``: a drum within this share of a digit's pitch is trained as that digit.
NEAR = 0.35


def rolling_labels(y: np.ndarray, value: np.ndarray, rolling_as: str) -> np.ndarray:
    """Training labels of drums: class 10 between two digits (``"reject"``) or the nearer digit (``"nearest"``).

    ``value`` is the drum's value (``7.4``), 10 or more for a blank drum (which stays class 10).

    >>> y, v = np.array([7, 10, 10, 10, 10, 10]), np.array([7.1, 7.3, 7.4, 7.6, 9.7, 10.0])
    >>> rolling_labels(y, v, "nearest").tolist(), rolling_labels(y, v, "near").tolist()
    ([7, 7, 7, 8, 0, 10], [7, 7, 10, 10, 0, 10])
    """
    if rolling_as not in ("nearest", "near", "reject"):
        raise ValueError(f"rolling_as must be 'nearest', 'near' or 'reject', got {rolling_as!r}")
    y = np.asarray(y).astype(np.uint8)
    if rolling_as == "reject":
        return y
    value = np.asarray(value, np.float64)
    rolling = (y == 10) & (value < 10)
    out = y.copy()
    out[rolling] = (np.floor(value[rolling] + 0.5).astype(np.int64) % 10).astype(np.uint8)
    if rolling_as == "near":
        frac = value - np.floor(value)
        out[rolling & (np.minimum(frac, 1 - frac) > NEAR + 1e-6)] = 10
    return out


def _as_float(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.float32) / 255.0)[..., None]


def effective_batch_size(cfg: TrainConfig, n: int) -> int:
    """The batch size used for ``n`` training images (see :class:`TrainConfig`).

    >>> effective_batch_size(TrainConfig(), 50_000), effective_batch_size(TrainConfig(), 5_000)
    (128, 32)
    """
    if cfg.batch_size is not None:
        return cfg.batch_size
    return int(min(128, max(32, n // 150 // 8 * 8)))


def _dataset(x: np.ndarray, y: np.ndarray, cfg: TrainConfig, batch: int, *, training: bool) -> Any:
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((_as_float(x), y.astype(np.int32)))
    if training:
        ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch, drop_remainder=training)
    if training and cfg.augment:
        ds = ds.enumerate().map(
            lambda i, xy: (augment_batch(xy[0], tf.stack([tf.constant(cfg.seed, tf.int64), i])), xy[1]),
            num_parallel_calls=1,
            deterministic=True,
        )
    return ds.prefetch(2)


def train(data: MnistData, cfg: TrainConfig, *, model: Any = None) -> tuple[Any, dict[str, Any]]:
    """Train the digit model on the training split, watching the validation split.

    The MNIST training digits are mixed with printed digits drawn by
    :func:`convert.printed.make_printed` (``cfg.printed``, seed ``cfg.seed``), display
    digits drawn by :func:`convert.displays.make_displays` (``cfg.displays``), the
    meter-digits ``train`` split (``cfg.meter_dir``, ``cfg.meter_repeat`` times) and, with
    ``cfg.reject_class``, with negatives drawn by
    :func:`convert.negatives.make_negatives` (seed ``cfg.seed``), labelled 10.
    Validation stays the MNIST validation digits, so ``val_acc`` is the strict
    digit accuracy (a digit called "not a digit" is an error).

    Args:
        data: MNIST; the test split is not touched.
        cfg: settings.
        model: a model to train instead of :func:`build_model` (built within the
            strategy scope by the caller); its output width must be ``cfg.classes``.

    Returns:
        ``(model, history)`` where history maps metric names to per-epoch lists.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(cfg.seed)
    x_train, y_train = data.x_train, data.y_train
    if cfg.limit is not None:
        x_train, y_train = x_train[: cfg.limit], y_train[: cfg.limit]
    n_mnist = len(x_train)
    n_printed = cfg.printed_for(n_mnist)
    n_neg = cfg.negatives_for(n_mnist + n_printed)
    if n_printed:
        from convert.printed import make_printed

        px, py = make_printed(n_printed, cfg.seed, fonts=cfg.fonts)
        x_train = np.concatenate([x_train, px])
        y_train = np.concatenate([y_train, py.astype(y_train.dtype)])
    if n_neg:
        from convert.negatives import make_negatives

        neg = make_negatives(n_neg, cfg.seed, fonts=cfg.fonts)
        x_train = np.concatenate([x_train, neg])
        y_train = np.concatenate([y_train, np.full(n_neg, 10, y_train.dtype)])
    n_displays = cfg.displays_for(n_mnist)
    if n_displays:
        from convert.displays import draw_displays

        ds = draw_displays(n_displays, cfg.seed, fonts=cfg.fonts)
        dx, dy = ds.x, rolling_labels(ds.y, ds.value, cfg.rolling_as)
        if not cfg.reject_class:  # a drum between two digits has no class of its own then
            dx, dy = dx[dy < 10], dy[dy < 10]
        x_train = np.concatenate([x_train, dx])
        y_train = np.concatenate([y_train, dy.astype(y_train.dtype)])
    n_meter = 0
    if cfg.meter_dir is not None and cfg.meter_repeat > 0:
        from convert.meterdigits import load_meter_digits

        md = load_meter_digits("train", cfg.meter_dir)
        mx, my = md.x, rolling_labels(md.y, md.value, cfg.rolling_as)
        if not cfg.reject_class:
            mx, my = mx[my < 10], my[my < 10]
        n_meter = len(my)
        x_train = np.concatenate([x_train, *[mx] * cfg.meter_repeat])
        y_train = np.concatenate([y_train, *[my.astype(y_train.dtype)] * cfg.meter_repeat])
    strategy = make_strategy()
    batch = effective_batch_size(cfg, len(x_train))
    steps = max(1, len(x_train) // batch)
    with strategy.scope():
        if model is None:
            model = build_model(cfg.width, classes=cfg.classes)
        if int(model.output_shape[-1]) != cfg.classes:
            raise ValueError(f"model {model.name} has {model.output_shape[-1]} outputs, the config wants {cfg.classes}")
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate / 10,
            decay_steps=max(1, cfg.epochs * steps - min(steps, cfg.epochs * steps // 10)),
            warmup_target=cfg.learning_rate,
            warmup_steps=min(steps, cfg.epochs * steps // 10),
            alpha=0.01,
        )
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc")],
        )
    log.info(
        "training %s on %d images (%d of them printed digits, %d negatives, %d display digits, "
        "%d meter-digits crops x %d), %d epoch(s) of %d steps, batch %d, %s",
        model.name,
        len(x_train),
        n_printed,
        n_neg,
        n_displays,
        n_meter,
        cfg.meter_repeat,
        cfg.epochs,
        steps,
        batch,
        type(strategy).__name__,
    )
    hist = model.fit(
        _dataset(x_train, y_train, cfg, batch, training=True),
        validation_data=_dataset(data.x_val, data.y_val, cfg, 500, training=False),
        epochs=cfg.epochs,
        verbose=cfg.verbose,
    )
    del tf
    return model, {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def augmentation_preview(images: np.ndarray, *, seed: int = 0, copies: int = 1) -> np.ndarray:
    """Augmented copies of uint8 digits, as uint8 ``(copies * N, 28, 28)``, for the report."""
    import tensorflow as tf

    x = tf.constant(_as_float(images))
    out = [augment_batch(x, tf.constant([seed, i], tf.int64)).numpy() for i in range(copies)]
    return np.clip(np.rint(np.concatenate(out)[..., 0] * 255), 0, 255).astype(np.uint8)
