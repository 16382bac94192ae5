#!/usr/bin/env bash
# Packaging checks that need the package registry (so they are not pytest tests),
# then lint, format and type checks:
#  1. `pip install .` with no extras, in a fresh venv, pulls no TensorFlow, OpenCV or
#     Flask, and `import edge_infer` there loads no TFLite runtime until a model loads;
#  2. the runtime's requirements resolve to published wheels on a Raspberry Pi:
#     aarch64 with Python 3.11 (Pi OS bookworm) and 3.13 (trixie), armv7l with 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "[ci] 1. bare install: pip install . (no extras) in a fresh venv"
$PY -m venv "$work/bare"
"$work/bare/bin/pip" install -q . 2>&1 | grep -v "^WARNING: Location" || true
forbidden=$("$work/bare/bin/pip" list --format=freeze 2>/dev/null | grep -iE '^(tensorflow|tensorflow-cpu|keras|tf-keras|opencv|flask|torch)[=-]' || true)
if [ -n "$forbidden" ]; then echo "[ci] FAIL: a bare install pulled in: $forbidden"; exit 1; fi
(cd "$work" && "$work/bare/bin/python" - <<'PY'
import sys
import edge_infer
heavy = {"tensorflow", "cv2", "ai_edge_litert", "tflite_runtime"} & set(sys.modules)
assert not heavy, f"import edge_infer loaded {heavy}"
import numpy as np
rec = edge_infer.DigitRecognizer()
assert "tensorflow" not in sys.modules
p = rec.classify(np.zeros((28, 28), np.uint8))
print(f"[ci]    ok: bare install runs on {rec.model.backend} without TensorFlow ({len(sys.modules)} modules loaded)")
PY
)

echo "[ci] 2. Raspberry Pi resolution: pip download --only-binary=:all: of the runtime requirements"
"$work/bare/bin/pip" wheel -q --no-deps -w "$work/wheel" . 2>&1 | grep -v "^WARNING: Location" || true
wheel=$(ls "$work"/wheel/edge_infer-*.whl)
# pip evaluates environment markers against this machine, not the --platform
# target, so each target's requirements are computed here from the wheel's
# metadata with that target's marker values, then downloaded for that target.
reqs_for() {  # arch python-version -> requirement lines
  "$work/bare/bin/python" - "$wheel" "$1" "$2" <<'PY'
import sys, zipfile
from email.parser import Parser
from pip._vendor.packaging.requirements import Requirement
wheel, arch, pyver = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
env = {"platform_machine": arch, "python_version": pyver, "python_full_version": pyver + ".0",
       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
for line in msg.get_all("Requires-Dist") or []:
    r = Requirement(line)
    if r.marker is None or r.marker.evaluate(env):
        r.marker = None
        print(r)
PY
}
check() {  # arch glibc-max python-version [requirement name left to the Pi's own index]
  local arch=$1 glibc=$2 pyver=$3 skip=${4:-} plats=() nodeps=()
  for minor in $(seq 17 "$glibc"); do plats+=(--platform "manylinux_2_${minor}_${arch}"); done
  plats+=(--platform "manylinux2014_${arch}" --platform "linux_${arch}")
  local dest="$work/pi-$arch-$pyver"
  mapfile -t reqs < <(reqs_for "$arch" "$pyver" | grep -v "^${skip:-@none@}\b")
  [ -n "$skip" ] && nodeps=(--no-deps)
  if ! "$work/bare/bin/pip" download -q --only-binary=:all: "${plats[@]}" --python-version "$pyver" \
        --implementation cp "${nodeps[@]}" -d "$dest" "${reqs[@]}" >"$dest.log" 2>&1; then
    echo "[ci] FAIL: $arch Python $pyver: ${reqs[*]} does not resolve:"; grep -v "^WARNING: Location" "$dest.log" | tail -5; exit 1
  fi
  echo "[ci]    ok: $arch Python $pyver needs ${reqs[*]} -> $(cd "$dest" && ls | tr '\n' ' ')"
}
check aarch64 36 3.11   # Raspberry Pi OS bookworm 64-bit (glibc 2.36)
check aarch64 41 3.13   # Raspberry Pi OS trixie 64-bit (glibc 2.41)
# PyPI has no armv7l numpy wheels: 32-bit Pi OS installs numpy<2 from piwheels (its
# default extra index) or Debian's python3-numpy; tflite-runtime's wheel is on PyPI.
check armv7l 36 3.11 numpy  # Raspberry Pi OS bookworm 32-bit
echo "[ci] 3. lint, format and types: ruff check, ruff format --check, mypy edge_infer"
.venv/bin/ruff check .
.venv/bin/ruff format --check --quiet edge_infer convert bench tests tools demos setup.py
.venv/bin/mypy --ignore-missing-imports edge_infer
echo "[ci] packaging checks passed"
