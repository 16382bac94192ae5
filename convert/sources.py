"""Scores per source, for the report: MNIST, printed, meter-digits per meter type, drums, displays.

One table, one row per source, with the new model beside the model shipped before it
(when there is one and it differs), both run through ``edge_infer`` (``Model.run``: the
device's interpreter and (de)quantisation) on the same 28x28 crops:

- MNIST test digits and the held-out printed digits, strict (argmax over all classes);
- the meter-digits ``eval`` split (six whole meters never trained on), per meter type and
  in total: its digits strictly ("right"), the best of 0-9, and the share answered "not a
  digit"; crops normalised by :func:`edge_infer.to_mnist` guessing the polarity, as
  ``DigitRecognizer.classify`` does with a crop it is given;
- the rolling-drum rule, its own row: a crop of a drum between two digits must be
  answered as one of those two digits or as "not a digit" (class 10), never a third digit
  (:func:`convert.meterdigits.rolling_safe`); on the real eval drums and the synthetic ones;
- held-out synthetic displays (:func:`convert.displays.heldout_displays`), per kind.

The int8 invoke time of both models is measured interleaved in the same process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["score_sources", "sources_markdown"]

log = logging.getLogger(__name__)


def _probs(path: Path, x: np.ndarray, *, batch: int = 500) -> np.ndarray:
    from edge_infer import load_model

    x01 = (np.asarray(x, np.float32) / 255.0)[..., None]
    with load_model(path, delegate="cpu") as m:
        return np.concatenate([m.run(x01[s : s + batch]) for s in range(0, len(x01), batch)])


def _rate(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if len(mask) else None


def _score_one(
    path: Path,
    *,
    mnist: tuple[np.ndarray, np.ndarray],
    printed: tuple[np.ndarray, np.ndarray] | None,
    meter: Any | None,
    displays: Any | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scores of one model; and its predictions on meter eval and displays (for the confusion matrices)."""
    from convert.meterdigits import rolling_safe

    rows: dict[str, Any] = {}
    preds: dict[str, np.ndarray] = {}
    p = _probs(path, mnist[0])
    rows["mnist"] = {"n": len(p), "right": _rate(p.argmax(1) == mnist[1])}
    if printed is not None:
        p = _probs(path, printed[0])
        rows["printed"] = {"n": len(p), "right": _rate(p.argmax(1) == printed[1])}
    if meter is not None:
        p = _probs(path, meter.x)
        cls, dig = p.argmax(1), p[:, :10].argmax(1)
        preds["meter"] = cls
        digits = meter.y < 10
        for t in [*sorted(set(meter.meter_type[digits].tolist())), None]:
            k = digits if t is None else digits & (meter.meter_type == t)
            rows[f"meter:{t or 'total'}"] = {
                "n": int(k.sum()),
                "right": _rate(cls[k] == meter.y[k]),
                "best_of_10": _rate(dig[k] == meter.y[k]),
                "rejected": _rate(cls[k] == 10),
            }
        r = meter.rolling
        safe = rolling_safe(cls[r], meter.value[r])
        rows["meter:rolling"] = {
            "n": int(r.sum()),
            "safe": _rate(safe),
            "rejected": _rate(cls[r] == 10),
            "third_digit": _rate(~safe),
        }
    if displays is not None:
        p = _probs(path, displays.x)
        cls = p.argmax(1)
        preds["displays"] = cls
        digits = displays.y < 10
        for kind in [*sorted(set(displays.kind.tolist())), None]:
            k = digits if kind is None else digits & (displays.kind == kind)
            if k.any():
                rows[f"displays:{kind or 'total'}"] = {
                    "n": int(k.sum()),
                    "right": _rate(cls[k] == displays.y[k]),
                    "rejected": _rate(cls[k] == 10),
                }
        r = (displays.kind == "drum") & (displays.y == 10)
        if r.any():
            rows["displays:rolling"] = {"n": int(r.sum()), "safe": _rate(rolling_safe(cls[r], displays.value[r]))}
    return rows, preds


def _invoker(path: Path) -> Any:
    """Set input, invoke, read output on a LiteRT interpreter of its own (1 thread): the raw invoke."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    x = np.zeros(inp["shape"], inp["dtype"])

    def call() -> Any:
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(outp["index"])

    return call


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    cm = np.zeros((11, 11), np.int64)
    np.add.at(cm, (y.astype(np.int64), pred.astype(np.int64)), 1)
    return cm


def score_sources(
    model: Path,
    *,
    previous: Path | None,
    mnist: tuple[np.ndarray, np.ndarray],
    printed: tuple[np.ndarray, np.ndarray] | None = None,
    meter: Any | None = None,
    displays: Any | None = None,
    latency_rounds: int = 5,
) -> dict[str, Any]:
    """Score ``model`` (and ``previous``, when given) on every source.

    Args:
        model: the new int8 model.
        previous: the model it replaces (scored the same way), or None.
        mnist: MNIST test images and labels.
        printed: held-out printed digits and labels.
        meter: :class:`convert.meterdigits.MeterDigits`, the ``eval`` split.
        displays: :class:`convert.displays.DisplaySet`, held out.
        latency_rounds: interleaved timing rounds (0: no timing).

    Returns:
        ``{"rows": {"new": ..., "previous": ...}, "latency_us": ..., "confusion": {...}, "pngs": {...}}``
        (PNG bytes keyed by file name).
    """
    from convert.figures import confusion_png

    labels = [str(i) for i in range(10)] + ["none"]
    new_rows, preds = _score_one(model, mnist=mnist, printed=printed, meter=meter, displays=displays)
    out: dict[str, Any] = {"rows": {"new": new_rows}, "confusion": {}, "pngs": {}}
    if previous is not None:
        out["rows"]["previous"] = _score_one(previous, mnist=mnist, printed=printed, meter=meter, displays=displays)[0]
    if "meter" in preds:
        cm = _confusion(meter.y, preds["meter"])
        out["confusion"]["meter_eval"] = cm.tolist()
        out["pngs"]["confusion_meter_eval.png"] = confusion_png(
            cm,
            title=f"int8, meter-digits eval split ({len(meter.y):,}; row none = drums between digits)",
            labels=labels,
        )
    if "displays" in preds:
        cm = _confusion(displays.y, preds["displays"])
        out["confusion"]["displays"] = cm.tolist()
        out["pngs"]["confusion_displays.png"] = confusion_png(
            cm, title=f"int8, held-out synthetic displays ({len(displays.y):,})", labels=labels
        )
    if latency_rounds and previous is not None:
        from convert.evaluate import measure_latency
        from edge_infer import load_model

        one = (mnist[0][:1].astype(np.float32) / 255.0)[..., None]
        a = load_model(model, delegate="cpu", num_threads=1)
        b = load_model(previous, delegate="cpu", num_threads=1)
        try:
            lat = measure_latency(
                {
                    "new": _invoker(model),
                    "previous": _invoker(previous),
                    "new_run": lambda: a.run(one),
                    "previous_run": lambda: b.run(one),
                },
                rounds=latency_rounds,
            )
        finally:
            a.close()
            b.close()
        out["latency_us"] = {
            **lat,
            "ratio": lat["new"] / lat["previous"],
            "run_ratio": lat["new_run"] / lat["previous_run"],
        }
    return out


_ROW_NAMES = {
    "mnist": "MNIST test (strict)",
    "printed": "printed digits, held-out fonts (strict)",
    "meter:total": "**meter-digits eval, all digits**",
    "meter:rolling": "**rolling drums answered safely** (meter-digits eval)",
    "displays:total": "synthetic displays, held out (all digits)",
    "displays:rolling": "rolling drums answered safely (synthetic, held out)",
}


def _name(key: str) -> str:
    if key in _ROW_NAMES:
        return _ROW_NAMES[key]
    src, _, sub = key.partition(":")
    return f"meter-digits eval, {sub}" if src == "meter" else f"synthetic displays, {sub}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def sources_markdown(s: dict[str, Any], *, meter_note: str | None = None) -> list[str]:
    """Markdown lines of the per-source table (and the confusion pictures)."""
    new, prev = s["rows"]["new"], s["rows"].get("previous")
    L = [
        "",
        "## Per source (int8 via edge_infer)",
        "",
        '"Right" is the argmax over all 11 classes (a digit answered "not a digit" is wrong); "best of 0-9" is '
        "what `Prediction.digit` says whatever `is_digit` says. A rolling drum (between two digits, label N "
        'in meter-digits) is answered safely when the answer is one of its two digits or "not a digit", never a '
        "third digit.",
        "",
    ]
    if prev is not None:
        L += [
            "| source | crops | before: right | before: best of 0-9 | before: not a digit | **after: right** "
            "| after: best of 0-9 | after: not a digit |",
            "|---|---|---|---|---|---|---|---|",
        ]
    else:
        L += ["| source | crops | right | best of 0-9 | not a digit |", "|---|---|---|---|---|"]
    for key, v in new.items():
        right = v.get("right", v.get("safe"))
        cells = [_pct(right), _pct(v.get("best_of_10")), _pct(v.get("rejected"))]
        if prev is not None:
            p = prev.get(key, {})
            before = [_pct(p.get("right", p.get("safe"))), _pct(p.get("best_of_10")), _pct(p.get("rejected"))]
            cells = before + [f"**{cells[0]}**", *cells[1:]]
        L.append(f"| {_name(key)} | {v['n']:,} | " + " | ".join(cells) + " |")
    lat = s.get("latency_us")
    if lat:
        L += [
            "",
            f"int8 invoke of one crop (LiteRT, 1 thread, interleaved in one process): after {lat['new']:.1f} µs, "
            f"before {lat['previous']:.1f} µs (**{lat['ratio']:.2f}x**; target <= 1.5x); through `Model.run`: "
            f"{lat['new_run']:.1f} µs vs {lat['previous_run']:.1f} µs ({lat['run_ratio']:.2f}x).",
        ]
    if meter_note:
        L += ["", meter_note]
    for name, title in (
        ("confusion_meter_eval.png", "meter-digits eval split"),
        ("confusion_displays.png", "held-out synthetic displays"),
    ):
        if name in s.get("pngs", {}):
            L += ["", f"Confusion, {title} (row `none`: drums between two digits):", "", f"![{title}]({name})"]
    return L
