"""Attack bench for `edge-infer serve`: throws a corpus of hostile requests at a server it starts.

Starts `python -m edge_infer serve --port 0 --workers 4 --camera sample` on 127.0.0.1 with an
API key, then runs each attack in turn, each in --copies parallel copies (8 by default), while
a monitor (from 127.0.0.2, so the wrong-key budget of 127.0.0.1 is not its own) asks
`/healthz` and classifies a small PNG every 50 ms. Per attack it prints: the answers
(status counts), wall time, the server's CPU time (per copy), its peak RSS during the
attack (VmHWM, reset between attacks), whether `/healthz` and classify stayed answered
(5 s timeout), the p99 of those normal requests, and ERROR lines the server logged.
Everything runs on loopback; every loop is bounded.

Usage: python bench/attack.py [--quick] [--copies 8] [--workers 4] [--no-camera]
       [--only NAME,...] [--server-root DIR] [--json PATH]

--quick is the slice the test suite runs (seconds: small bombs, 2 copies, no camera, a
short slow-loris). --server-root runs another checkout's server (e.g. the code before a
change) with this corpus.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import queue
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_BYTES = 4 * 1024 * 1024  # the server's default --max-bytes
TIMEOUT = 5.0  # normal requests slower than this count as not answered


# -- the corpus -------------------------------------------------------------------
def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(w: int, h: int, depth: int, ctype: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def zeros_deflated(total: int, row: int = 1 << 20) -> bytes:
    """``total`` zero bytes, deflated (about 1000:1), without holding them in memory."""
    c = zlib.compressobj(9)
    zero = bytes(row)
    out = []
    left = total
    while left > 0:
        out.append(c.compress(zero[: min(row, left)]))
        left -= row
    out.append(c.flush())
    return b"".join(out)


def png16_rgba(quick: bool) -> bytes:
    """A 6000x6600 16-bit RGBA PNG: ~400 KB on the wire, 317 MB decoded (the issue's first row)."""
    w, h = 6000, 6600
    row = 1 + w * 8
    return png_file(w, h, 16, 6, zeros_deflated(64 * row if quick else h * row, row))


def idat_bomb(quick: bool) -> bytes:
    """A 100x100 gray PNG whose image data inflates to 4 GB (64 MB with --quick)."""
    return png_file(100, 100, 8, 0, zeros_deflated((64 if quick else 4096) << 20))


def small_jpeg(seed: int = 0) -> bytes:
    import cv2

    img = np.full((120, 160, 3), 230, np.uint8)
    cv2.putText(img, str(seed % 10), (50, 100), cv2.FONT_HERSHEY_SIMPLEX, 3, (30, 30, 30), 8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def jpeg_segment_flood(quick: bool) -> bytes:
    """A JPEG with a million empty APP1 segments before its frame header (4 MB)."""
    jpg = small_jpeg()
    return jpg[:2] + b"\xff\xe1\x00\x02" * 1_000_000 + jpg[2:]


def photo(w: int, h: int, *, progressive: bool = False) -> bytes:
    """A photo-like page with printed numbers (noise keeps it from compressing to nothing)."""
    import cv2

    rng = np.random.default_rng(1)
    img = np.full((h, w, 3), 215, np.uint8)
    for i in range(8):
        cv2.putText(img, "4271", (w // 12, (i + 1) * h // 9), cv2.FONT_HERSHEY_SIMPLEX, h / 700, (40, 35, 30), h // 250)
    img += rng.integers(0, 12, (h, w, 1), dtype=np.uint8)
    params = [cv2.IMWRITE_JPEG_QUALITY, 70] + ([cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else [])
    return cv2.imencode(".jpg", img, params)[1].tobytes()


def normal_png(seed: int = 0) -> bytes:
    import cv2

    img = np.full((84, 84), 235, np.uint8)
    cv2.putText(img, str(seed % 10), (18, 70), cv2.FONT_HERSHEY_SIMPLEX, 2.4, 25, 7)
    return cv2.imencode(".png", img)[1].tobytes()


# -- the server and its figures ---------------------------------------------------
class ServerProcess:
    def __init__(self, root: Path, key: str, workers: int, camera: bool) -> None:
        cmd = [sys.executable, "-m", "edge_infer", "serve", "--port", "0", "--workers", str(workers)]
        cmd += ["--camera", "sample"] if camera else []
        env = {**os.environ, "EDGE_INFER_API_KEY": key, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root, env=env)
        self.log: list[str] = []
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        threading.Thread(target=self._read_log, daemon=True).start()
        try:
            line = lines.get(timeout=90)
        except queue.Empty:
            self.stop()
            raise SystemExit("the server did not start within 90 s") from None
        if "listening on http://127.0.0.1:" not in line:
            self.stop()
            raise SystemExit(f"the server did not start: {line}{''.join(self.log)}")
        self.port = int(line.split("listening on http://127.0.0.1:")[1].split()[0])
        self.pid = self.proc.pid

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self.log.append(line)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def status_kb(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
        return 0

    def reset_peak(self) -> bool:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Monitor:
    """Normal traffic from 127.0.0.2: /healthz and a classify, every 50 ms, one at a time each,
    each on a new connection."""

    def __init__(self, port: int, key: str, server: ServerProcess) -> None:
        self.port, self.key, self.server = port, key, server
        self.records: list[tuple[float, str, int, float]] = []  # (start, kind, status or 0, seconds)
        self.rss_max = 0
        self._stop = threading.Event()
        self._body = normal_png(3)
        self._threads = [
            threading.Thread(target=self._loop, args=(kind,), daemon=True) for kind in ("healthz", "classify")
        ] + [threading.Thread(target=self._sample, daemon=True)]

    def start(self) -> Monitor:
        for t in self._threads:
            t.start()
        return self

    def _loop(self, kind: str) -> None:
        conn = None
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:  # a new connection each time, as a client that comes and goes (it needs an accept)
                conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=TIMEOUT, source_address=("127.0.0.2", 0)
                )
                if kind == "healthz":
                    conn.request("GET", "/healthz")
                else:
                    conn.request(
                        "POST", "/v1/classify", self._body, {"Content-Type": "image/png", "X-API-Key": self.key}
                    )
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
            finally:
                if conn is not None:
                    conn.close()
            self.records.append((t0, kind, status, time.monotonic() - t0))
            self._stop.wait(0.05)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.rss_max = max(self.rss_max, self.server.status_kb("VmRSS"))
            except OSError:
                return
            self._stop.wait(0.02)

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        rows = [r for r in self.records if t0 <= r[0] <= t1]
        lat = [r[3] for r in rows if r[2] == 200]
        out: dict[str, Any] = {}
        for kind in ("healthz", "classify"):
            mine = [r for r in rows if r[1] == kind]
            out[f"{kind}_answered"] = f"{sum(r[2] == 200 for r in mine)}/{len(mine)}"
            out[f"{kind}_ok"] = bool(mine) and all(r[2] == 200 for r in mine)
        missed = [TIMEOUT for r in rows if r[2] != 200]
        both = np.asarray(lat + missed) * 1000
        out["normal_p99_ms"] = round(float(np.percentile(both, 99)), 1) if len(both) else None
        out["normal_max_ms"] = round(float(both.max()), 1) if len(both) else None
        return out

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(TIMEOUT + 2)


# -- attacks: each returns the outcomes (HTTP status, or a word) of its requests ------------
@dataclass
class Ctx:
    port: int
    key: str
    copies: int
    quick: bool
    bodies: dict[str, bytes] = field(default_factory=dict)


def request(ctx: Ctx, method: str, path: str, body: bytes | None, headers: dict[str, str], timeout: float = 60) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=timeout)
    try:
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        if status >= 400 and not resp.getheader("Content-Type", "").startswith("application/json"):
            return f"{status}-not-json"
        if status >= 400 and status != 500 and b'"error"' not in data:
            return f"{status}-no-message"
        return str(status)
    except TimeoutError:
        return "timeout"
    except (OSError, http.client.HTTPException) as e:
        return type(e).__name__
    finally:
        conn.close()


def parallel(n: int, fn: Callable[[int], list[str] | str]) -> list[str]:
    out: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        got = fn(i)
        with lock:
            out.extend(got if isinstance(got, list) else [got])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return out


def post_image(name: str, make: Callable[[bool], bytes], ctype: str = "image/png", path: str = "/v1/classify"):
    def attack(ctx: Ctx) -> list[str]:
        body = ctx.bodies[name] if name in ctx.bodies else make(ctx.quick)
        hdr = {"Content-Type": ctype, "X-API-Key": ctx.key}
        return parallel(ctx.copies, lambda i: request(ctx, "POST", path, body, hdr))

    return attack


def oversize_content_length(ctx: Ctx) -> list[str]:
    """A Content-Length one byte over --max-bytes, no key, no body sent: should be a JSON 413 at once."""

    def one(i: int) -> str:
        with socket.create_connection(("127.0.0.1", ctx.port), timeout=10) as s:
            s.sendall(
                f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                f"Content-Length: {MAX_BYTES + 1}\r\n\r\n".encode()
            )
            try:
                head = s.recv(4096).decode("latin-1")
            except TimeoutError:
                return "timeout (waiting for the body)"
        status = head.split(" ", 2)[1] if head.startswith("HTTP/") else "no answer"
        return status if "application/json" in head else f"{status}-not-json"

    return parallel(ctx.copies, one)


def keyless_bodies(ctx: Ctx) -> list[str]:
    """40 keyless connections announcing a body of --max-bytes minus one, sending it slowly."""
    n = 10 if ctx.quick else 40

    def one(i: int) -> str:
        with socket.create_connection(("127.0.0.1", ctx.port), timeout=10) as s:
            s.sendall(
                f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                f"Content-Length: {MAX_BYTES - 1}\r\n\r\n".encode()
            )
            sent = 0
            s.settimeout(0.2)
            for _ in range(40):  # up to 2 MB in 64 KB pieces, looking for an early answer
                try:
                    head = s.recv(4096).decode("latin-1")
                    return head.split(" ", 2)[1] + (" before the body" if sent < MAX_BYTES - 1 else "")
                except TimeoutError:
                    pass
                try:
                    s.sendall(bytes(65536))
                    sent += 65536
                except OSError:
                    return "closed"
            return "no early answer (body being buffered)"

    return parallel(n, one)


def slowloris(ctx: Ctx) -> list[str]:
    """200 connections sending one byte of header a second for 30 s (20 for 3 s with --quick)."""
    n, seconds = (20, 3) if ctx.quick else (200, 30)
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
            s.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            pass
    dropped = 0
    for _ in range(seconds):
        time.sleep(1)
        for s in socks:
            if s.fileno() < 0:
                continue
            try:
                s.send(b"a")
            except OSError:
                dropped += 1
                s.close()
    outcome = [f"connected {len(socks)}/{n}", f"dropped by server {dropped}"]
    for s in socks:
        s.close()
    return outcome


def idle_viewers(ctx: Ctx) -> list[str]:
    """Every viewer slot taken by a client that never reads; then a real viewer asks (up to 40 s)."""
    stuck = []
    for _ in range(8):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", ctx.port))
        s.sendall(f"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {ctx.key}\r\n\r\n".encode())
        stuck.append(s)
    t0 = time.monotonic()
    result = "real viewer refused for 40 s"
    while time.monotonic() - t0 < 40:
        conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10, source_address=("127.0.0.2", 0))
        try:
            conn.request("GET", "/stream.mjpg", headers={"X-API-Key": ctx.key})
            resp = conn.getresponse()
            if resp.status == 200 and resp.read(2048):
                result = f"real viewer served after {time.monotonic() - t0:.1f} s"
                break
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(1)
    for s in stuck:
        s.close()
    return [result]


def bad_queries(ctx: Ctx) -> list[str]:
    body = normal_png(1)
    paths = [
        "/v1/classify?top_k=%C2%B2",
        "/v1/detect?min_height=%E2%81%B5",
        "/v1/detect?max_height=" + "9" * 4300,
        "/v1/classify?top_k=" + "1" * 5000,
        "/v1/detect?fast=%D9%A1",
    ]
    hdr = {"Content-Type": "image/png", "X-API-Key": ctx.key}
    return parallel(ctx.copies, lambda i: [request(ctx, "POST", p, body, hdr) for p in paths])


def wrong_keys(ctx: Ctx) -> list[str]:
    """Key guesses on keep-alive connections, as fast as they are answered (bounded: 2000, or 400)."""
    n = 400 if ctx.quick else 2000

    def one(i: int) -> list[str]:
        out = []
        conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10)
        for k in range(n // 4):
            try:
                conn.request("GET", "/v1/model", headers={"X-API-Key": f"guess-{i}-{k}-{secrets.token_hex(8)}"})
                resp = conn.getresponse()
                resp.read()
                out.append(str(resp.status))
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                out.append(type(e).__name__)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10)
        conn.close()
        return out

    return parallel(4, one)


def json_crop(quick: bool) -> bytes:
    side = 200 if quick else 1000  # 1000x1000 "0.5," is 4 MB: the largest JSON crop under --max-bytes
    row = "[" + ",".join(["0.5"] * side) + "]"
    return ('{"image": [' + ",".join([row] * side) + "]}").encode()


ATTACKS: dict[str, tuple[Callable[[Ctx], list[str]], str, bool]] = {
    # name: (attack, what it is, in --quick)
    "png16_rgba_6000x6600": (post_image("png16", png16_rgba), "16-bit RGBA PNG, 317 MB decoded", True),
    "idat_bomb": (post_image("idat", idat_bomb), "100x100 PNG whose IDAT inflates to 4 GB", True),
    "jpeg_segment_flood": (
        post_image("jsf", jpeg_segment_flood, "image/jpeg"),
        "4 MB JPEG of 1M APP1 segments",
        True,
    ),
    "progressive_jpeg_24mp": (
        post_image("prog", lambda q: photo(6000, 4000, progressive=True), "image/jpeg", "/v1/detect"),
        "progressive 6000x4000 JPEG (coefficients 72 MB)",
        False,
    ),
    "photo_12mp_detect": (
        post_image("photo", lambda q: photo(4032, 3024), "image/jpeg", "/v1/detect"),
        "a real 12 MP photo to /v1/detect (read reduced)",
        False,
    ),
    "json_1000x1000": (
        post_image("json", json_crop, "application/json"),
        "4 MB JSON crop of 1M floats",
        False,
    ),
    "oversize_content_length": (oversize_content_length, "Content-Length max+1, no key, no body", True),
    "keyless_bodies": (keyless_bodies, "40 keyless 4 MB bodies", True),
    "bad_queries": (bad_queries, "top_k=², min_height=⁵, 4300-digit values", True),
    "wrong_keys": (wrong_keys, "2000 wrong keys as fast as answered", True),
    "slowloris": (slowloris, "200 connections, 1 header byte/s for 30 s", True),
    "idle_viewers": (idle_viewers, "8 GET /stream.mjpg that never read", False),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the small slice the test suite runs")
    ap.add_argument("--copies", type=int, default=None, help="parallel copies of each attack (default 8; 2 quick)")
    ap.add_argument("--workers", type=int, default=4, help="server --workers (default 4)")
    ap.add_argument("--no-camera", action="store_true", help="serve without the sample clip (--quick does)")
    ap.add_argument("--only", default=None, help="comma-separated attack names")
    ap.add_argument("--server-root", type=Path, default=ROOT, help="the checkout whose server runs (default this)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "attack.json")
    args = ap.parse_args(argv)
    copies = args.copies or (2 if args.quick else 8)
    if not 1 <= copies <= 64:
        ap.error("--copies must be 1..64")
    camera = not (args.quick or args.no_camera)
    names = args.only.split(",") if args.only else [n for n, a in ATTACKS.items() if a[2] or not args.quick]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        ap.error(f"unknown attacks {unknown}; known: {', '.join(ATTACKS)}")
    if not camera and "idle_viewers" in names:
        names.remove("idle_viewers")

    key = secrets.token_urlsafe(24)
    server = ServerProcess(args.server_root, key, args.workers, camera)
    rows: list[dict[str, Any]] = []
    monitor = Monitor(server.port, key, server).start()
    try:
        time.sleep(1.0)
        idle = monitor.window(0, time.monotonic())
        base_rss = server.status_kb("VmRSS")
        print(
            f"server pid {server.pid} on 127.0.0.1:{server.port}: --workers {args.workers}"
            f"{', camera sample' if camera else ''}, {copies} copies per attack; idle RSS {base_rss / 1024:.0f} MB, "
            f"normal p99 {idle['normal_p99_ms']} ms"
        )
        for name in names:
            fn, what, _ = ATTACKS[name]
            ctx = Ctx(server.port, key, copies, args.quick)
            _prebuild(name, ctx)
            monitor.rss_max = 0
            peak_ok = server.reset_peak()
            errors_before = sum("ERROR" in line or "Traceback" in line for line in server.log)
            cpu0, t0 = server.cpu(), time.monotonic()
            outcomes = fn(ctx)
            t1, cpu1 = time.monotonic(), server.cpu()
            time.sleep(0.3)  # let the monitor see the aftermath
            row = {
                "attack": name,
                "what": what,
                "outcomes": dict(collections.Counter(outcomes)),
                "wall_s": round(t1 - t0, 2),
                "server_cpu_s": round(cpu1 - cpu0, 3),
                "server_cpu_s_per_copy": round((cpu1 - cpu0) / max(1, copies), 3),
                "peak_rss_mb": round((server.status_kb("VmHWM") if peak_ok else monitor.rss_max) / 1024, 1),
                "error_log_lines": sum("ERROR" in line or "Traceback" in line for line in server.log) - errors_before,
                **monitor.window(t0, t1 + 0.3),
            }
            rows.append(row)
            print(
                f"{name:<26} {json.dumps(row['outcomes']):<44} {row['wall_s']:>6.2f} s  CPU {row['server_cpu_s']:>6.2f} s"
                f"  peak {row['peak_rss_mb']:>6.0f} MB  healthz {row['healthz_answered']:>6}"
                f"  classify {row['classify_answered']:>6}  p99 {row['normal_p99_ms']} ms  ERROR {row['error_log_lines']}",
                flush=True,
            )
    finally:
        monitor.stop()
        server.stop()
    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": "python bench/attack.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "server_root": str(args.server_root),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "workers": args.workers,
        "camera": camera,
        "copies": copies,
        "idle_rss_mb": round(base_rss / 1024, 1),
        "peak_rss_mb": max((r["peak_rss_mb"] for r in rows), default=0),
        "attacks": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"peak server RSS over all attacks {result['peak_rss_mb']:.0f} MB; wrote {args.json}")
    return 0


def _prebuild(name: str, ctx: Ctx) -> None:
    """Builds an image attack's body before its clock starts (the big ones take a second)."""
    makers = {
        "png16_rgba_6000x6600": ("png16", png16_rgba),
        "idat_bomb": ("idat", idat_bomb),
        "jpeg_segment_flood": ("jsf", jpeg_segment_flood),
        "progressive_jpeg_24mp": ("prog", lambda q: photo(6000, 4000, progressive=True)),
        "photo_12mp_detect": ("photo", lambda q: photo(4032, 3024)),
        "json_1000x1000": ("json", json_crop),
    }
    if name in makers:
        key, make = makers[name]
        ctx.bodies[key] = make(ctx.quick)


if __name__ == "__main__":
    sys.exit(main())
