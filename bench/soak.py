"""Soak: many classify and detect calls in one process; does memory grow?

Reads RSS (VmRSS from /proc/self/status) after a warm-up and at checkpoints, and
reports growth from the warm-up level. Target: <= 5 MB over 100,000 classify and
2,000 detect calls.

Usage: python bench/soak.py [--classify 100000] [--detect 2000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classify", type=int, default=100_000)
    ap.add_argument("--detect", type=int, default=2_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from convert.data import load_mnist
    from edge_infer import DigitRecognizer
    from tests.scenes import make_scene

    mnist = load_mnist(download=False)
    digits = mnist.x_test[:1000]
    frames = [make_scene(9000 + i, (mnist.x_test, mnist.y_test)).frame for i in range(20)]
    rec = DigitRecognizer()
    # warm-up: every code path once, so one-time allocations are not counted as growth
    for i in range(2000):
        rec.classify(digits[i % 1000])
    rec.classify_batch(digits[:32])
    for f in frames:
        rec.detect(f)
    base = rss_mb()
    print(f"after warm-up: RSS {base:.1f} MB")
    points = []
    t0 = time.perf_counter()
    step = max(1, args.classify // 10)
    for i in range(args.classify):
        rec.classify(digits[i % 1000])
        if (i + 1) % step == 0:
            points.append(("classify", i + 1, rss_mb()))
            print(f"  classify {i + 1:>7}: RSS {points[-1][2]:.1f} MB (+{points[-1][2] - base:.2f})", flush=True)
    step = max(1, args.detect // 10)
    for i in range(args.detect):
        rec.detect(frames[i % len(frames)])
        if (i + 1) % step == 0:
            points.append(("detect", i + 1, rss_mb()))
            print(f"  detect   {i + 1:>7}: RSS {points[-1][2]:.1f} MB (+{points[-1][2] - base:.2f})", flush=True)
    growth = max(p[2] for p in points) - base
    final = points[-1][2] - base
    res = {
        "classify_calls": args.classify,
        "detect_calls": args.detect,
        "rss_after_warmup_mb": round(base, 1),
        "max_growth_mb": round(growth, 2),
        "final_growth_mb": round(final, 2),
        "seconds": round(time.perf_counter() - t0, 1),
        "target_mb": 5.0,
        "met": growth <= 5.0,
        "points": [{"phase": a, "calls": b, "rss_mb": round(c, 2)} for a, b, c in points],
    }
    print(
        f"RSS growth: max {growth:.2f} MB, final {final:.2f} MB (target <= 5 MB: {'met' if res['met'] else 'NOT met'}); "
        f"{res['seconds']} s"
    )
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2))
        os.replace(tmp, args.json)
    return 0 if res["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
