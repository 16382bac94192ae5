"""The timing core and the report of ``python -m bench`` (see :mod:`bench.suite`).

Subjects are timed in interleaved rounds against their baselines; a figure is the median
over rounds and a ratio the median of per-round ratios. Nothing here imports more than
the standard library and numpy.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent  # the checkout, when there is one
TARGETS = {  # name: (limit, what is compared)
    "classify": (1.3, "classify vs raw set+invoke+get, per digit"),
    "batch12_vs_raw": (1.1, "classify_batch(12) vs raw interpreter at batch 12, per digit"),
    "batch12_vs_classify": (0.85, "classify_batch(12) per digit vs single classify"),
    "detect": (0.6, "detect vs baseline pipeline, per frame (recall and precision >= baseline)"),
    "detect_fast": (0.6, "detect(fast=True) vs baseline pipeline, per frame (recall and precision >= baseline)"),
    "startup": (1.5, "import edge_infer + load + first answer vs raw LiteRT (CPU time, fresh process)"),
    "startup_rss": (60.0, "peak RSS of the edge_infer start-up, MB"),
}
# Each detect pipeline's subject key -> the key of the baseline run timed beside it.
DETECT_BASELINES = {"detect": "detect-baseline", "detect-fast": "detect-baseline-fast"}


def say(msg: str) -> None:
    """Progress for people."""
    print(f"[bench] {msg}", flush=True)


# --------------------------------------------------------------------------- timing


@dataclass
class Subject:
    """One thing timed: ``fn`` does ``items`` units of work (digits or frames) per call.

    Each round records wall time and process CPU time per item. ``clock`` picks
    the one that figures use: ``"cpu"`` for single-threaded work (on a shared
    machine it leaves out the time the process waits for a core), ``"wall"``
    where threads run in parallel.
    """

    key: str
    fn: Callable[[], object]
    items: int = 1
    block: int = 0  # calls per round; 0: calibrated after the warm-up
    clock: str = "cpu"
    wall: list[float] = field(default_factory=list)  # seconds per item, one per round
    cpu: list[float] = field(default_factory=list)

    @property
    def samples(self) -> list[float]:
        return self.cpu if self.clock == "cpu" else self.wall

    @property
    def median(self) -> float:
        return float(np.median(self.samples))


def interleave(subjects: list[Subject], *, rounds: int, block_s: float, warmup_s: float) -> None:
    """Times the subjects in alternating order, round after round, into their samples."""
    for s in subjects:
        n, t0 = 0, time.perf_counter()
        while n < 2 or (time.perf_counter() - t0 < warmup_s and s.block == 0):
            s.fn()
            n += 1
        if s.block == 0:
            per_call = (time.perf_counter() - t0) / n
            s.block = int(min(100_000, max(1, round(block_s / per_call))))
    wall, cpu = time.perf_counter, time.process_time
    for r in range(rounds):
        for s in subjects if r % 2 == 0 else subjects[::-1]:
            fn = s.fn
            c0, t0 = cpu(), wall()
            for _ in range(s.block):
                fn()
            t1, c1 = wall(), cpu()
            s.wall.append((t1 - t0) / (s.block * s.items))
            s.cpu.append((c1 - c0) / (s.block * s.items))


def paired(a: Subject, b: Subject) -> dict[str, Any]:
    """Median and quartiles of the per-round ratios a/b (CPU time when both use it, else wall)."""
    clock = "cpu" if a.clock == b.clock == "cpu" else "wall"
    r = np.array(getattr(a, clock)) / np.array(getattr(b, clock))
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    return {"ratio": float(med), "q1": float(q1), "q3": float(q3), "clock": clock}


def row(
    label: str, s: Subject, base: Subject | None = None, *, unit: str = "us/digit", base_label: str = "", **extra: Any
) -> dict[str, Any]:
    """A table row: the subject's median (and its baseline's, on the same clock) in microseconds."""
    out: dict[str, Any] = {"label": label, "key": s.key, "unit": unit}
    if base is None:
        out.update(value=s.median * 1e6, clock=s.clock)
    else:
        p = paired(s, base)
        out.update(
            value=float(np.median(getattr(s, p["clock"]))) * 1e6,
            baseline=float(np.median(getattr(base, p["clock"]))) * 1e6,
            baseline_key=base.key,
            baseline_label=base_label or base.key,
            **p,
        )
    out["wall"] = float(np.median(s.wall)) * 1e6
    out.update(extra)
    return out


# --------------------------------------------------------------------------- targets and report


def _find(sections: dict[str, Any], section: str, key: str) -> dict[str, Any] | None:
    for r in sections.get(section, {}).get("rows", []):
        if r.get("key") == key:
            return r
    return None


def targets(sections: dict[str, Any], subjects: dict[str, Subject]) -> list[dict[str, Any]]:
    """Each speed target: value, baseline, ratio, limit, met (None when not measured)."""
    out = []

    def add(
        name: str,
        value: float | None,
        baseline: float | None,
        ratio: float | None,
        met: bool | None,
        unit: str,
        note: str = "",
    ) -> None:
        limit, what = TARGETS[name]
        out.append(
            {
                "target": name,
                "what": what,
                "value": value,
                "baseline": baseline,
                "ratio": ratio,
                "limit": limit,
                "met": met,
                "unit": unit,
                "note": note,
            }
        )

    s = subjects
    if "classify" in s:
        r = paired(s["classify"], s["raw@1"])["ratio"]
        add("classify", s["classify"].median * 1e6, s["raw@1"].median * 1e6, r, r <= 1.3, "us/digit")
        r = paired(s["batch@12"], s["raw@12"])["ratio"]
        add("batch12_vs_raw", s["batch@12"].median * 1e6, s["raw@12"].median * 1e6, r, r <= 1.1, "us/digit")
        r = paired(s["batch@12"], s["classify"])["ratio"]
        add("batch12_vs_classify", s["batch@12"].median * 1e6, s["classify"].median * 1e6, r, r <= 0.85, "us/digit")
    for name, key in (("detect", "detect"), ("detect_fast", "detect-fast")):
        if key not in s:
            continue
        q, b = sections["detect"]["quality"][key], sections["detect"]["quality"]["baseline"]
        base = s[DETECT_BASELINES[key]]
        r = paired(s[key], base)["ratio"]
        good = q["recall"] >= b["recall"] and q["precision"] >= b["precision"]
        add(
            name,
            s[key].median * 1e6,
            base.median * 1e6,
            r,
            r <= 0.6 and good,
            "us/frame",
            f"recall {q['recall']:.3f} vs {b['recall']:.3f}, precision {q['precision']:.3f} vs {b['precision']:.3f}",
        )
    ei, raw = _find(sections, "startup", "edge_infer"), _find(sections, "startup", "litert")
    if ei and raw:
        add("startup", ei["value"], raw["value"], ei["ratio"], ei["ratio"] <= 1.5, "ms")
        add(
            "startup_rss",
            ei["rss_mb"],
            raw["rss_mb"],
            ei["rss_mb"] / raw["rss_mb"],
            ei["rss_mb"] <= 60.0,
            "MB",
            "limit is absolute (MB), baseline is the raw runtime's RSS",
        )
    measured = {t["target"] for t in out}
    for name in TARGETS:  # every target is reported, measured or not
        if name not in measured:
            section = {
                "batch12_vs_raw": "batch",
                "batch12_vs_classify": "batch",
                "startup_rss": "startup",
                "detect_fast": "detect",
            }.get(name, name)
            why = sections.get(section, {}).get("skipped", f"section {section!r} was not run")
            add(name, None, None, None, None, "", why)
    return sorted(out, key=lambda t: list(TARGETS).index(t["target"]))


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit.startswith("us") and v >= 10_000:
        return f"{v / 1000:.2f} ms"
    if unit.startswith("us"):
        return f"{v:.1f} us"
    if unit == "ms":
        return f"{v:.0f} ms"
    return f"{v:.1f} {unit}"


def print_report(result: dict[str, Any]) -> None:
    """The tables for people: every row, then the targets."""
    m = result["meta"]
    print(
        f"\nedge-infer {m['edge_infer']} bench, {m['started']}: {m['cpu']} ({m['cores']} cores"
        + (f"; {' '.join(m['simd'])}" if m.get("simd") else "")
        + "; load average "
        f"{m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}), {m['backend']}, {Path(m['model']).name} "
        f"({m['macs_per_digit'] or '?'} MACs/digit), delegate cpu, {m['threads']} thread(s), "
        + ("malloc keeps freed memory" if m.get("malloc_keeps_freed_memory") else "malloc as the system set it")
    )
    print(
        "value = median over interleaved rounds; ratio = median of per-round ratios [quartiles]; "
        "cpu = process CPU time, wall = elapsed"
    )
    for name, sec in result["sections"].items():
        if "skipped" in sec:
            print(f"== {name}: skipped: {sec['skipped']}")
            continue
        print(f"== {name}")
        for r in sec["rows"]:
            per = r["unit"].split("/")[-1] if "/" in r["unit"] else ""
            val = _fmt(r["value"], r["unit"]) + (f"/{per}" if per else "")
            line = f"  {r['label']:<56} {val:>16} {r.get('clock', ''):<4}"
            if "ratio" in r:
                line += f"  {r['ratio']:5.2f}x [{r['q1']:.2f}-{r['q3']:.2f}] of {r['baseline_label']}"
            for k in ("recall", "precision"):
                if k in r:
                    line += f"  {k} {r[k]:.3f}"
            if "share" in r:
                line += f"  ({r['share']:.0%} of detect)"
            if "rss_mb" in r:
                line += f"  peak RSS {r['rss_mb']:.0f} MB, wall {r['wall_ms']:.0f} ms"
            print(line)
        for note in sec.get("notes", []):
            print(f"  note: {note}")
    print("\n== targets (ratios from this run)")
    for t in result["targets"]:
        met = {True: "MET", False: "NOT MET", None: "not measured"}[t["met"]]
        ratio = "-" if t["ratio"] is None else f"{t['ratio']:.2f}x"
        print(
            f"  {t['what']:<78} {_fmt(t['value'], t['unit']):>10} vs {_fmt(t['baseline'], t['unit']):>10}"
            f"  {ratio:>6} (limit {t['limit']:g})  {met}{'  ' + t['note'] if t['note'] else ''}"
        )


def source_state() -> dict[str, Any]:
    """The checkout's commit and its uncommitted runtime files (what exactly was measured)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "edge_infer", "bench", "tests/scenes.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "uncommitted": sorted(line[3:] for line in dirty if line.strip())} if head else {}


# CPU features that decide how fast int8 and float kernels run (XNNPACK picks its
# kernels by them): the same code's ratios differ between machines with and without.
SIMD_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
    "i8mm",
    "asimdhp",
    "sve",
)


def machine_info() -> dict[str, Any]:
    cpu = ""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model"):
                cpu = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu or platform.processor(),
        "simd": [f for f in SIMD_FEATURES if f in flags],
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
