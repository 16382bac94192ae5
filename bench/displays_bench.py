"""Display and counter photos: readings right, digit recall and precision, time per frame.

    python bench/displays_bench.py                 # 150 frames (50 of each kind), 640x480
    python bench/displays_bench.py --n 30 --shape 3000x4000 --save out/displays   # 12 MP, annotated PNGs

The photos come from ``tests/displays.py`` (seeds 30_000 on; the tests use 40_000 on),
drawn by a renderer that shares nothing with the training generators. A reading is
right when one number read equals the displayed reading exactly, decimal point
included ("247.00"). Times are per frame on this machine, beside the plain
handwriting pipeline's time on the same frames (``--kind paper``) for scale.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from edge_infer import DigitRecognizer  # noqa: E402
from edge_infer.runtime.sysmem import keep_freed_memory  # noqa: E402
from tests.displays import KINDS, make_display, reading_right  # noqa: E402
from tests.scenes import match  # noqa: E402

BENCH_SEED = 30_000


def run(n: int, shape: tuple[int, int], *, model: str | None = None, save: Path | None = None, seed: int = BENCH_SEED):
    """Reads ``n`` display photos per kind; returns the figures per kind and in all."""
    keep_freed_memory()
    out: dict[str, dict[str, float]] = {}
    with DigitRecognizer(model) as rec:
        rec.read_numbers(make_display(seed, shape=shape).frame)  # warm-up
        totals = {"frames": 0, "right": 0, "tp": 0, "fp": 0, "fn": 0, "seconds": 0.0}
        for k_i, kind in enumerate(KINDS):
            agg = dict.fromkeys(totals, 0)
            agg["seconds"] = 0.0
            wrong = []
            for i in range(n):
                sc = make_display(seed + 1000 * k_i + i, kind=kind, shape=shape)
                t0 = time.perf_counter()
                numbers = rec.read_numbers(sc.frame)
                agg["seconds"] += time.perf_counter() - t0
                dets = [d for num in numbers for d in num.digits]
                r = match(dets, sc.digits)
                ok = reading_right(numbers, sc)
                agg["frames"] += 1
                agg["right"] += ok
                agg["tp"], agg["fp"], agg["fn"] = agg["tp"] + r.tp, agg["fp"] + r.fp, agg["fn"] + r.fn
                if not ok:
                    wrong.append(f"{sc.seed}:{sc.reading}->{'|'.join(x.value for x in numbers) or '-'}")
                if save is not None:
                    _save(save, sc, numbers, ok)
            for key in totals:
                totals[key] += agg[key]
            out[kind] = _figures(agg)
            out[kind]["wrong_examples"] = wrong[:8]  # type: ignore[assignment]
        out["all"] = _figures(totals)
    return out


def _figures(a: dict[str, float]) -> dict[str, float]:
    tp, fp, fn = a["tp"], a["fp"], a["fn"]
    return {
        "frames": a["frames"],
        "readings_right": round(a["right"] / max(1, a["frames"]), 4),
        "recall": round(tp / max(1, tp + fn), 4),
        "precision": round(tp / max(1, tp + fp), 4),
        "ms_per_frame": round(1000 * a["seconds"] / max(1, a["frames"]), 2),
    }


def _save(directory: Path, sc, numbers, ok: bool) -> None:
    import cv2

    from edge_infer.apps.camera import annotate

    directory.mkdir(parents=True, exist_ok=True)
    dets = [d for num in numbers for d in num.digits]
    img = annotate(sc.frame, dets, numbers, header=f"truth {sc.reading} | {'right' if ok else 'WRONG'}")
    cv2.imwrite(str(directory / f"{sc.kind}_{sc.seed}.png"), img)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="frames per kind (default 50)")
    ap.add_argument("--shape", default="480x640", help="frame HxW (default 480x640)")
    ap.add_argument("--model", default=None, help="a .tflite model (default: the shipped one)")
    ap.add_argument("--save", type=Path, default=None, help="write annotated frames here")
    ap.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    a = ap.parse_args(argv)
    h, w = (int(v) for v in a.shape.lower().split("x"))
    res = run(a.n, (h, w), model=a.model, save=a.save)
    print(f"{'kind':<8} {'frames':>6} {'read right':>10} {'recall':>7} {'precision':>9} {'ms/frame':>9}")
    for kind, f in res.items():
        print(
            f"{kind:<8} {f['frames']:>6} {f['readings_right']:>10.3f} {f['recall']:>7.3f} "
            f"{f['precision']:>9.3f} {f['ms_per_frame']:>9.1f}"
        )
    for kind in KINDS:
        if res[kind]["wrong_examples"]:
            print(f"  {kind} wrong: {', '.join(res[kind]['wrong_examples'])}")  # type: ignore[arg-type]
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
