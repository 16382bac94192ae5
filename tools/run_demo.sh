#!/usr/bin/env bash
# The main job from a fresh clone: install the runtime with the camera extra into
# .venv and run the digit-recognition demo. With no camera it reads the bundled
# sample clip; with no screen it runs headless and writes the annotated video
# and a still to out/. Extra arguments go to `edge-infer camera`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import ensurepip, venv" 2>/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || $PY -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[camera]'
mkdir -p out
if [ $# -eq 0 ]; then
  set -- --save out/demo.mp4 --stats
  [ -n "${DISPLAY:-}" ] || set -- "$@" --headless
fi
exec .venv/bin/edge-infer camera "$@"
