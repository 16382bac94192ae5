"""Checks run inside the emulated arm64 root by tools/pi_check.sh, with the venv's Python.

Expects in ``--dir``: ``digits.npz`` (images uint8 (N, 28, 28), labels), ``digit.png`` and
``digit.txt`` (its label). Prints one line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

# Distributions that would mean the heavy build-time stack leaked into a runtime install.
_FORBIDDEN = ("tensorflow", "tensorflow-cpu", "tf-nightly", "tensorflow-intel", "keras")


# arm64 HWCAP bits (linux/arch/arm64/include/uapi/asm/hwcap.h) that change which
# XNNPACK kernels run: dot product (Pi 5's Cortex-A76 has it, Pi 4's A72 does not), etc.
_HWCAP = {1: "asimd", 10: "asimdhp", 20: "asimddp", 22: "sve"}
_HWCAP2 = {1: "sve2", 13: "i8mm", 14: "bf16", 23: "sme"}


class CheckFailed(Exception):
    pass


def cpu_features() -> str:
    """The CPU features the (emulated) kernel reports to this process, from its auxv."""
    try:
        raw = Path("/proc/self/auxv").read_bytes()
    except OSError:
        return "unknown"
    words = struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8])
    aux = dict(zip(words[::2], words[1::2]))
    found = [n for b, n in _HWCAP.items() if aux.get(16, 0) >> b & 1]
    found += [n for b, n in _HWCAP2.items() if aux.get(26, 0) >> b & 1]
    return " ".join(found) or "none of " + " ".join([*_HWCAP.values(), *_HWCAP2.values()])


def ok(msg: str) -> None:
    print(f"  ok   {msg}", flush=True)


def check_no_tensorflow() -> None:
    installed = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in md.distributions()}
    leaked = sorted(installed.intersection(_FORBIDDEN))
    if leaked or importlib.util.find_spec("tensorflow") is not None:
        raise CheckFailed(f"TensorFlow is installed in the runtime venv: {leaked or ['tensorflow']}")
    ok(f"no TensorFlow in the venv ({len(installed)} distributions, none of {', '.join(_FORBIDDEN)})")


def check_import() -> object:
    import edge_infer

    heavy = [m for m in ("tensorflow", "cv2", "ai_edge_litert", "tflite_runtime") if m in sys.modules]
    if heavy:
        raise CheckFailed(f"`import edge_infer` imported {heavy}; it should import stdlib + numpy only")
    ok(f"import edge_infer {getattr(edge_infer, '__version__', '?')} pulls in no runtime/TF/OpenCV")
    return edge_infer


def manifest_accuracy(edge_infer: object) -> float:
    path = Path(edge_infer.__file__).parent / "models" / "digits_int8.json"  # type: ignore[attr-defined]
    try:
        manifest = json.loads(path.read_text())
        stated = float(manifest["accuracy"]["int8"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckFailed(f"cannot read accuracy.int8 from the shipped manifest {path}: {e!r}") from e
    if not 0.0 < stated <= 1.0:
        raise CheckFailed(f"manifest accuracy.int8 = {stated!r} is not a fraction")
    return stated


def check_accuracy(edge_infer: object, data: Path, tolerance: float) -> None:
    import numpy as np

    with np.load(data / "digits.npz") as z:
        images, labels = z["images"], z["labels"]
    stated = manifest_accuracy(edge_infer)
    t = time.monotonic()
    rec = edge_infer.DigitRecognizer()  # type: ignore[attr-defined]
    model = getattr(rec, "model", None)
    where = ", ".join(f"{k}={getattr(model, k)!r}" for k in ("backend", "delegate") if hasattr(model, k))
    preds = rec.classify_batch(images)
    secs = time.monotonic() - t
    if len(preds) != len(images):
        raise CheckFailed(f"classify_batch returned {len(preds)} predictions for {len(images)} images")
    digits = np.array([p.digit for p in preds])
    scores = np.array([p.score for p in preds], dtype=float)
    if not ((digits >= 0) & (digits <= 9)).all() or not ((scores >= 0) & (scores <= 1)).all():
        raise CheckFailed("predictions hold digits outside 0-9 or scores outside [0, 1]")
    acc = float((digits == labels).mean())
    need = stated - tolerance
    line = (
        f"{len(images)} MNIST test digits: accuracy {acc:.4f} "
        f"(manifest int8 {stated:.4f}, need >= {need:.4f}) [{where or 'backend not reported'}; "
        f"{secs:.1f}s emulated]"
    )
    if acc < need:
        raise CheckFailed(line)
    ok(line)
    close = getattr(rec, "close", None)
    if callable(close):
        close()


def _digit_from_json(obj: object) -> int | None:
    if isinstance(obj, dict):
        if isinstance(obj.get("digit"), int):
            return obj["digit"]
        for v in obj.values():
            found = _digit_from_json(v)
            if found is not None:
                return found
    if isinstance(obj, list):
        for v in obj:
            found = _digit_from_json(v)
            if found is not None:
                return found
    return None


def check_cli(cli: str, data: Path) -> None:
    image = data / "digit.png"
    want = int((data / "digit.txt").read_text())
    plain = subprocess.run([cli, "classify", str(image)], capture_output=True, text=True, check=False)
    if plain.returncode != 0:
        raise CheckFailed(f"`edge-infer classify` exited {plain.returncode}: {plain.stderr.strip()}")
    printed = plain.stdout.strip()
    printed = printed[len(f"{image}:") :] if printed.startswith(f"{image}:") else printed
    m = re.search(r"(?<![\d.])([0-9])(?![\d.])", printed)
    if m is None or int(m.group(1)) != want:
        raise CheckFailed(f"`edge-infer classify {image.name}` printed {plain.stdout.strip()!r}, want {want}")
    ok(f"`edge-infer classify {image.name}` printed {plain.stdout.strip()!r} (label {want})")

    js = subprocess.run([cli, "classify", str(image), "--json"], capture_output=True, text=True, check=False)
    if js.returncode != 0:
        raise CheckFailed(f"`edge-infer classify --json` exited {js.returncode}: {js.stderr.strip()}")
    try:
        got = _digit_from_json(json.loads(js.stdout))
    except ValueError as e:
        raise CheckFailed(f"`edge-infer classify --json` printed non-JSON {js.stdout.strip()!r}") from e
    if got != want:
        raise CheckFailed(f"`edge-infer classify --json` gave digit {got}, want {want}: {js.stdout.strip()}")
    ok(f"`edge-infer classify {image.name} --json` gave digit {got}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--cli", required=True, help="path of the installed edge-infer script")
    args = ap.parse_args(argv)

    print(
        f"checks in root: {platform.machine()} (QEMU_CPU={os.environ.get('QEMU_CPU', 'default')}; "
        f"features: {cpu_features()}), Python {platform.python_version()}, numpy {md.version('numpy')}",
        flush=True,
    )
    try:
        if platform.machine() != "aarch64":
            raise CheckFailed(f"running on {platform.machine()}, not aarch64: emulation is not in use")
        check_no_tensorflow()
        edge_infer = check_import()
        check_accuracy(edge_infer, args.dir, args.tolerance)
        check_cli(args.cli, args.dir)
    except CheckFailed as e:
        print(f"  FAIL {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
