"""Corrupt the shipped model many ways and load each copy in its own process.

Every case is written to a temporary directory and loaded through the normal
API (``load_model`` then one ``run``) in a forked child, so a crash inside the
runtime kills only that child. Outcomes:

- ``typed``: a typed error (``ModelError`` and the other documented types);
- ``accepted``: the damaged model loaded and ran (a failure for the shipped
  model, whose manifest carries its sha256);
- ``untyped``: some other Python exception escaped;
- ``crash``: the child died from a signal; ``hang``: it outlived the timeout.

Two modes: ``--manifest`` (the default; the copy keeps the shipped manifest, as
the shipped model does) and ``--no-manifest`` (the runtime's own checks only,
for models that come without a manifest).

Usage: python bench/fuzz_models.py [--cases 1000] [--seed 0] [--no-manifest] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUTCOMES = ("typed", "accepted", "untyped", "crash", "hang")
_EXIT = {0: "accepted", 10: "typed", 11: "untyped"}


def mutations(data: bytes, n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` damaged variants of ``data``, each with the name of its damage."""
    rng = np.random.default_rng(seed)
    size = len(data)
    kinds = [
        "bitflip",
        "bitflips",
        "truncate",
        "zero_page",
        "random_run",
        "header",
        "offset",
        "random_file",
        "foreign_file",
        "duplicate_run",
    ]
    foreign = [
        b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8)),
        b'{"model": "not really"}\n',
        Path("/bin/true").read_bytes()[:4096] if Path("/bin/true").exists() else b"\x7fELF" + b"\0" * 60,
        b"",
        b"TFL3",
        data[:8] + b"\0" * 64,
        b"\0\0\0\0TFL3" + b"\xff" * 512,
    ]
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        b = bytearray(data)
        if kind == "bitflip":
            pos = int(rng.integers(0, size))
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == "bitflips":
            for pos in rng.integers(0, size, int(rng.integers(2, 64))):
                b[int(pos)] ^= 1 << int(rng.integers(0, 8))
        elif kind == "truncate":
            b = b[: int(rng.integers(0, size))]
        elif kind == "zero_page":
            page = int(rng.choice([64, 256, 1024, 4096]))
            start = int(rng.integers(0, max(1, size - page)))
            b[start : start + page] = bytes(min(page, size - start))
        elif kind == "random_run":
            ln = int(rng.integers(1, 512))
            start = int(rng.integers(0, max(1, size - ln)))
            b[start : start + ln] = rng.integers(0, 256, min(ln, size - start), dtype=np.uint8).tobytes()
        elif kind == "header":
            pos = int(rng.integers(0, 16))
            b[pos] = int(rng.integers(0, 256))
        elif kind == "offset":
            # add to a 4-aligned little-endian word: flatbuffer offsets and sizes
            pos = int(rng.integers(0, size // 4)) * 4
            (v,) = struct.unpack_from("<I", b, pos)
            delta = int(rng.choice([1, 4, 8, 64, 4096, 1 << 20, 1 << 31, -4, -8]))
            struct.pack_into("<I", b, pos, (v + delta) % (1 << 32))
        elif kind == "random_file":
            b = bytearray(rng.integers(0, 256, int(rng.integers(1, 2 * size)), dtype=np.uint8).tobytes())
            if rng.random() < 0.5:
                b[4:8] = b"TFL3"
        elif kind == "foreign_file":
            b = bytearray(foreign[i // len(kinds) % len(foreign)])
        elif kind == "duplicate_run":
            ln = int(rng.integers(8, 256))
            src, dst = (int(x) for x in rng.integers(0, max(1, size - ln), 2))
            b[dst : dst + ln] = data[src : src + ln]
        if bytes(b) == data:  # a no-op mutation is not a damaged model
            b[int(rng.integers(0, size))] ^= 0xFF
        out.append((kind, bytes(b)))
    return out


def _child(path: str) -> None:
    from edge_infer import EdgeInferError, load_model

    try:
        with load_model(path) as m:
            x = np.zeros(m.input.shape, np.float32)
            m.run(x)
    except (EdgeInferError, ValueError, TypeError, OSError):
        os._exit(10)
    except BaseException:  # noqa: BLE001 - the point is to see what escapes
        os._exit(11)
    os._exit(0)


def run_fuzz(
    cases: int = 1000,
    *,
    seed: int = 0,
    manifest: bool = True,
    timeout: float = 20.0,
    jobs: int = 2,
    progress: bool = False,
) -> dict:
    """Runs the fuzz campaign and returns counts per outcome (and per damage kind)."""
    import edge_infer  # noqa: F401  (imported before forking so children start fast)
    from edge_infer.runtime.backend import get_backend
    from edge_infer.runtime.model import shipped_model_path

    get_backend()
    src = shipped_model_path()
    data = src.read_bytes()
    ctx = mp.get_context("fork")
    counts: Counter[str] = Counter()
    by_kind: dict[str, Counter[str]] = {}
    failures: list[dict] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edge_infer_fuzz_") as tmp:
        todo = list(enumerate(mutations(data, cases, seed)))
        running: list[tuple[int, str, mp.Process, float]] = []
        while todo or running:
            while todo and len(running) < jobs:
                i, (kind, blob) = todo.pop(0)
                d = Path(tmp) / f"case{i}"
                d.mkdir()
                p = d / src.name
                p.write_bytes(blob)
                if manifest:
                    shutil.copy(src.with_suffix(".json"), p.with_suffix(".json"))
                proc = ctx.Process(target=_child, args=(str(p),))
                proc.start()
                running.append((i, kind, proc, time.monotonic()))
            time.sleep(0.002)
            for item in list(running):
                i, kind, proc, started = item
                if proc.exitcode is None and time.monotonic() - started < timeout:
                    continue
                if proc.exitcode is None:
                    proc.kill()
                    proc.join()
                    outcome = "hang"
                elif proc.exitcode < 0:
                    outcome = "crash"
                else:
                    outcome = _EXIT.get(proc.exitcode, "untyped")
                running.remove(item)
                shutil.rmtree(Path(tmp) / f"case{i}", ignore_errors=True)
                counts[outcome] += 1
                by_kind.setdefault(kind, Counter())[outcome] += 1
                if outcome != "typed":
                    failures.append(
                        {
                            "case": i,
                            "kind": kind,
                            "outcome": outcome,
                            "signal": -proc.exitcode if outcome == "crash" else None,
                        }
                    )
                done = sum(counts.values())
                if progress and done % 100 == 0:
                    print(f"  {done}/{cases} cases, {dict(counts)}", flush=True)
    return {
        "cases": cases,
        "seed": seed,
        "manifest": manifest,
        "outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "failures": failures[:50],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-manifest", action="store_true", help="load copies without the manifest (runtime checks only)")
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    mode = "without manifest" if args.no_manifest else "with the shipped manifest"
    print(f"fuzzing the shipped model: {args.cases} damaged copies, {mode}, seed {args.seed}")
    res = run_fuzz(
        args.cases, seed=args.seed, manifest=not args.no_manifest, timeout=args.timeout, jobs=args.jobs, progress=True
    )
    print(f"\n{'damage':<14}" + "".join(f"{k:>10}" for k in OUTCOMES))
    for kind, c in res["by_kind"].items():
        print(f"{kind:<14}" + "".join(f"{c.get(k, 0):>10}" for k in OUTCOMES))
    print(f"{'total':<14}" + "".join(f"{res['outcomes'][k]:>10}" for k in OUTCOMES))
    print(f"{res['seconds']} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2))
        os.replace(tmp, args.json)
    bad = res["outcomes"]["crash"] + res["outcomes"]["hang"] + res["outcomes"]["untyped"]
    if not args.no_manifest:
        bad += res["outcomes"]["accepted"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
