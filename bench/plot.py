"""``python -m bench --plot``: the ratios of one run as a PNG, drawn with OpenCV (no matplotlib).

One horizontal bar per row that has a baseline: its ratio on a log scale, the
quartiles of the per-round ratios as a whisker, the baseline (1.0) as a line,
and the issue's limit as a red tick where a row has one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

W, ROW_H, LEFT, RIGHT, TOP = 1400, 22, 470, 260, 64
LO, HI = 0.05, 200.0  # ratio axis (log)
LIMITS = {
    ("classify", "classify"): 1.3,
    ("batch", "batch@12"): 1.1,
    ("detect", "detect"): 0.6,
    ("detect", "detect-fast"): 0.6,
    ("startup", "edge_infer"): 1.5,
}
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX


def _x(r: float) -> int:
    r = min(max(r, LO), HI)
    return int(LEFT + (W - LEFT - RIGHT) * (math.log(r) - math.log(LO)) / (math.log(HI) - math.log(LO)))


def draw(result: dict[str, Any], path: str | Path) -> None:
    """Writes the PNG for a result dict of ``python -m bench``."""
    import cv2

    lines: list[tuple[str, str, dict[str, Any] | None]] = []
    for name, sec in result["sections"].items():
        lines.append(("section", name if "skipped" not in sec else f"{name}: skipped", None))
        for r in sec.get("rows", []):
            if "ratio" in r:
                lines.append(("row", r["label"], {**r, "section": name}))
    h = TOP + ROW_H * len(lines) + 40
    img = np.full((h, W, 3), 255, np.uint8)
    meta = result["meta"]
    title = (
        f"edge-infer bench: ratio to the baseline of the same run (median, quartiles)   "
        f"{meta.get('cpu', '')[:40]}, {meta.get('cores')} cores, {meta.get('started')}"
    )
    cv2.putText(img, title, (10, 22), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for r in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0):
        x = _x(r)
        cv2.line(img, (x, TOP - 10), (x, h - 30), (0, 0, 0) if r == 1.0 else (215, 215, 215), 1)
        cv2.putText(img, f"{r:g}x", (x - 12, h - 12), FONT, 0.42, (60, 60, 60), 1, cv2.LINE_AA)
    y = TOP
    for kind, text, r in lines:
        if kind == "section":
            cv2.putText(img, text, (10, y + 15), FONT, 0.52, (0, 0, 0), 2, cv2.LINE_AA)
            y += ROW_H
            continue
        if r is None:
            continue
        cv2.putText(img, text[:62], (24, y + 15), FONT, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
        x1 = _x(1.0)
        xr = _x(r["ratio"])
        colour = (70, 150, 60) if r["ratio"] <= 1.0 else (60, 110, 220)
        cv2.rectangle(img, (min(x1, xr), y + 4), (max(x1, xr), y + ROW_H - 4), colour, -1)
        cy = y + ROW_H // 2
        cv2.line(img, (_x(r["q1"]), cy), (_x(r["q3"]), cy), (0, 0, 0), 1)
        limit = LIMITS.get((r["section"], r["key"]))
        if limit:
            xl = _x(limit)
            cv2.line(img, (xl, y + 1), (xl, y + ROW_H - 1), (0, 0, 230), 2)
        base = str(r.get("baseline_label", "")).replace("XNNPACK, 1 thread, ", "")
        cv2.putText(
            img, f"{r['ratio']:.2f}x of {base}"[:44], (W - RIGHT + 8, y + 15), FONT, 0.4, (30, 30, 30), 1, cv2.LINE_AA
        )
        y += ROW_H
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
