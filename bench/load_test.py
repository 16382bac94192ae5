"""Load test of `edge-infer serve` on loopback, beside DigitRecognizer.classify in-process.

Starts the real server (`python -m edge_infer serve --port 0`) in a subprocess bound to
127.0.0.1, then C client threads (keep-alive connections) send N POST /v1/classify
requests between them: PNGs of MNIST test digits drawn as dark ink on paper. Every
answer is checked against this process's own answer for the same bytes, so a mixed-up
interpreter under concurrency shows up as a wrong answer, not just a slow one.
The same images are also classified in this process, one thread, with and without the
PNG decode. Bounded: at most N requests and --time-limit seconds.

Usage: python bench/load_test.py [--requests 10000] [--clients 16] [--workers 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def paper_png(digit: np.ndarray, scale: int = 3) -> bytes:
    """An MNIST digit as dark ink on light paper, upscaled, PNG-encoded (a phone-crop-like image)."""
    import cv2

    ink = np.kron(digit.astype(np.float32) / 255.0, np.ones((scale, scale), np.float32))
    ink = np.pad(ink, 4 * scale)
    img = 230.0 - 190.0 * ink
    ok, buf = cv2.imencode(".png", np.clip(img, 0, 255).astype(np.uint8))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str, int]:
    cmd = [
        sys.executable,
        "-m",
        "edge_infer",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        str(args.workers),
    ]
    if args.model:
        cmd += ["--model", args.model]
    env = {k: v for k, v in os.environ.items() if k != "EDGE_INFER_API_KEY"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=60)
    except queue.Empty:
        proc.kill()
        raise SystemExit("the server did not start within 60 s") from None
    if "listening on http://127.0.0.1:" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    port = int(line.split("listening on http://127.0.0.1:")[1].split()[0])
    return proc, "127.0.0.1", port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(lat_s: list[float], wall: float) -> dict[str, float]:
    ms = np.asarray(lat_s) * 1000.0
    if not len(ms):
        return {"n": 0}
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "throughput_per_s": round(len(ms) / wall, 1),
    }


def run_clients(
    host: str, port: int, bodies: list[tuple[bytes, int]], n: int, clients: int, deadline: float
) -> dict[str, Any]:
    lock = threading.Lock()
    next_i = [0]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    wrong = [0]

    def client(c: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine = latencies[c]
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next_i[0]
                    if i >= n:
                        return
                    next_i[0] += 1
                body, label = bodies[i % len(bodies)]
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/v1/classify", body, {"Content-Type": "image/png"})
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=30)
                    continue
                mine.append(time.perf_counter() - t0)
                if resp.status != 200:
                    with lock:
                        errors.append(f"HTTP {resp.status}: {data[:200]!r}")
                elif json.loads(data)["digit"] != label:
                    with lock:
                        wrong[0] += 1
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic() + 35))
    wall = time.perf_counter() - t0
    lat = [x for per in latencies for x in per]
    return {
        "sent": next_i[0],
        "answered": len(lat),
        "errors": len(errors),
        "error_samples": errors[:5],
        "wrong_answers": wrong[0],
        "timed_out": next_i[0] < n,
        "wall_s": round(wall, 2),
        **summarise(lat, wall),
    }


def in_process(model: str | None, bodies: list[tuple[bytes, int]], n: int, deadline: float) -> dict[str, Any]:
    from edge_infer import DigitRecognizer
    from edge_infer.apps.serve.uploads import decode_upload

    images = [decode_upload(b) for b, _ in bodies]
    out: dict[str, Any] = {}
    with DigitRecognizer(model, workers=1) as rec:
        for _ in range(20):
            rec.classify(images[0])
        for name, fn in (
            ("classify", lambda i: rec.classify(images[i])),
            ("decode_classify", lambda i: rec.classify(decode_upload(bodies[i][0]))),
        ):
            lat = []
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(n):
                if time.monotonic() > deadline:
                    break
                s = time.perf_counter()
                fn(k % len(images))
                lat.append(time.perf_counter() - s)
            out[name] = summarise(lat, time.perf_counter() - t0)
            out[name]["cpu_ms_per_call"] = round(1000 * (time.process_time() - c0) / max(1, len(lat)), 3)
        out["delegate"], out["backend"] = rec.model.delegate, rec.model.backend
        out["model"] = rec.model.path.name
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000, help="HTTP requests in all (default 10000)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent client connections (default 16)")
    ap.add_argument("--workers", type=int, default=2, help="server interpreters, `serve --workers` (default 2)")
    ap.add_argument("--model", default=None, help="a .tflite model (default: the shipped one)")
    ap.add_argument("--in-process", type=int, default=2000, help="in-process classify calls (default 2000)")
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds for the HTTP part at most (default 300)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "load_test.json")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= 1_000_000 or not 1 <= args.clients <= 256:
        ap.error("--requests must be 1..1000000 and --clients 1..256")

    from convert.data import load_mnist

    data = load_mnist(download=False)
    pngs = [paper_png(data.x_test[i]) for i in range(64)]
    from edge_infer import DigitRecognizer
    from edge_infer.apps.serve.uploads import decode_upload

    # HTTP answers are checked against this process's answer for the same bytes (same model, same
    # code): any difference is a fault of the service (e.g. interpreters mixed up under load)
    with DigitRecognizer(args.model) as rec:
        local_digits = [rec.classify(decode_upload(b)).digit for b in pngs]
    model_right = sum(d == int(y) for d, y in zip(local_digits, data.y_test[: len(pngs)]))
    bodies = list(zip(pngs, local_digits))

    proc, host, port = start_server(args)
    try:
        warm = run_clients(host, port, bodies, 100, 4, time.monotonic() + 60)
        cpu0 = cpu_seconds(proc.pid)
        http_res = run_clients(host, port, bodies, args.requests, args.clients, time.monotonic() + args.time_limit)
        http_res["server_cpu_ms_per_request"] = round(
            1000 * (cpu_seconds(proc.pid) - cpu0) / max(1, http_res["answered"]), 3
        )
        http_res["warmup_errors"] = warm["errors"]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    local = in_process(args.model, bodies, args.in_process, time.monotonic() + 120)

    result = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "server_workers": args.workers,
        "clients": args.clients,
        "image": f"{len(bodies)} MNIST test digits as dark-ink-on-paper PNGs, {np.mean([len(b) for b, _ in bodies]):.0f} B avg",
        "model_right_on_these": f"{model_right}/{len(pngs)}",
        "http": http_res,
        "in_process": local,
    }
    rows = [
        (f"HTTP POST /v1/classify ({args.clients} clients, {args.workers} workers)", http_res),
        ("in-process classify (decoded image, 1 thread)", local["classify"]),
        ("in-process decode + classify (1 thread)", local["decode_classify"]),
    ]
    print(
        f"model {local['model']} on {local['delegate']} ({local['backend']}), {os.cpu_count()} CPUs, {result['image']}"
    )
    print(f"load average {result['load_average_1_5_15']} (other work on this machine slows every row alike)")
    print(f"{'':<58} {'n':>7} {'p50 ms':>8} {'p99 ms':>8} {'per s':>8} {'CPU ms':>7}")
    http_res["cpu_ms_per_call"] = http_res["server_cpu_ms_per_request"]
    for name, r in rows:
        print(
            f"{name:<58} {r['n']:>7} {r.get('p50_ms', 0):>8.2f} {r.get('p99_ms', 0):>8.2f} "
            f"{r.get('throughput_per_s', 0):>8.0f} {r.get('cpu_ms_per_call', 0):>7.2f}"
        )
    print(
        f"HTTP: {http_res['sent']} sent, {http_res['answered']} answered, {http_res['errors']} errors, "
        f"{http_res['wrong_answers']} answers differing from in-process classify "
        "(CPU ms: the server process's per request; this process's per call)"
        + (" -- TIME LIMIT HIT" if http_res["timed_out"] else "")
    )
    for e in http_res["error_samples"]:
        print("  error:", e)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    ok = http_res["errors"] == 0 and not http_res["timed_out"] and http_res["wrong_answers"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
