"""The HTTP service: the real app served by waitress on a free loopback port, real requests."""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

import cv2
import numpy as np
import pytest
import requests

from edge_infer import DigitRecognizer
from edge_infer.apps.serve.app import create_app, make_server
from edge_infer.apps.serve.mjpeg import LiveStream

from .conftest import paper_digit, with_exif_orientation

MAX_BYTES = 512 * 1024
KEY = "s3cret-key-0123456789"


def png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def rec():
    with DigitRecognizer(workers=2) as r:
        yield r


def serve(app, *, threads: int = 4, **kw):
    return make_server(app, host="127.0.0.1", port=0, threads=threads, **kw).start()


@pytest.fixture(scope="module")
def url(rec):
    with serve(create_app(rec, max_bytes=MAX_BYTES), max_body=MAX_BYTES) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def http():
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def digits(mnist_test):
    x, y = mnist_test
    return [(x[i], int(y[i])) for i in range(10)]


def post(http, url, path, body, ctype, **kw):
    return http.post(url + path, data=body, headers={"Content-Type": ctype}, timeout=30, **kw)


# -- reading digits ---------------------------------------------------------
def test_png_of_dark_ink_on_white_paper_reads_the_right_digit(http, url, digits):
    got = [post(http, url, "/v1/classify", png(paper_digit(d, scale=6)), "image/png").json() for d, _ in digits]
    assert [g["digit"] for g in got] == [label for _, label in digits]
    first = got[0]
    assert set(first) == {"digit", "score", "is_digit", "not_a_digit_score", "top_k"} and 0.5 < first["score"] <= 1.0
    assert all(g["is_digit"] and 0.0 <= g["not_a_digit_score"] < 0.5 for g in got)
    assert len(first["top_k"]) == 3 and first["top_k"][0] == {"digit": first["digit"], "score": first["score"]}


def test_jpeg_grayscale_and_transparent_png(http, url, digits):
    d, label = digits[1]
    paper = paper_digit(d, scale=5)
    assert post(http, url, "/v1/classify", jpeg(paper), "image/jpeg").json()["digit"] == label
    gray = cv2.cvtColor(paper, cv2.COLOR_BGR2GRAY)
    assert post(http, url, "/v1/classify", png(gray), "image/png").json()["digit"] == label
    # black ink on a transparent background (a common export): laid on white, not read as black on black
    big = cv2.resize(d, None, fx=5, fy=5, interpolation=cv2.INTER_NEAREST)
    bgra = np.zeros((*big.shape, 4), np.uint8)
    bgra[:, :, 3] = big
    assert post(http, url, "/v1/classify", png(bgra), "image/png").json()["digit"] == label
    bgra[:, :, :3] = 255  # white ink on a clear page (made for a dark theme): laid on black
    assert post(http, url, "/v1/classify", png(bgra), "image/png").json()["digit"] == label
    # a phone's portrait photo: pixels stored sideways, an EXIF tag to turn them
    sideways = with_exif_orientation(jpeg(cv2.rotate(paper, cv2.ROTATE_90_CLOCKWISE)), 8)
    assert post(http, url, "/v1/classify", sideways, "image/jpeg").json()["digit"] == label
    # octet-stream is sniffed; ?top_k= sets how many alternatives come back
    r = post(http, url, "/v1/classify?top_k=10", png(paper), "application/octet-stream")
    assert r.json()["digit"] == label and len(r.json()["top_k"]) == 10


def test_json_28x28_either_polarity_and_scale(http, url, digits):
    for d, label in digits[:4]:
        for img in (d.tolist(), (255 - d).tolist(), (d / 255.0).tolist()):
            r = http.post(url + "/v1/classify", json={"image": img}, timeout=30)
            assert r.status_code == 200 and r.json()["digit"] == label
    d, label = digits[4]
    crop = cv2.cvtColor(paper_digit(d, scale=2), cv2.COLOR_BGR2GRAY)  # another size: a crop
    assert http.post(url + "/v1/classify", json={"image": crop.tolist()}, timeout=30).json()["digit"] == label


def test_parallel_requests_all_answered_right(http, url, digits):
    bodies = [(png(paper_digit(d, scale=4)), label) for d, label in digits]
    results: list[tuple[int, int, int]] = []

    def client(i: int) -> None:
        with requests.Session() as s:
            for body, label in bodies[i % 3 :: 3]:
                r = post(s, url, "/v1/classify", body, "image/png")
                results.append((r.status_code, r.json().get("digit"), label))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == sum(len(bodies[i % 3 :: 3]) for i in range(8))
    assert all(code == 200 and got == want for code, got, want in results)


# -- client mistakes: 4xx with a JSON message, nothing logged at ERROR ---------
def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


BAD = [
    ("garbage", b"this is not an image at all", "image/png", 400, "not a PNG or JPEG"),
    ("empty", b"", "image/png", 400, "empty"),
    ("truncated png", None, "image/png", 400, "could not be decoded"),
    ("truncated jpeg", b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg", 400, "damaged JPEG"),
    ("bad json", b'{"image": [[1, 2]', "application/json", 400, "bad JSON"),
    ("NaN", b'{"image": [[0, NaN], [1, 2]]}', "application/json", 400, "NaN"),
    ("huge number", b'{"image": [[0, 1e999], [1, 2]]}', "application/json", 400, "finite"),
    ("no image key", b'{"img": [[0]]}', "application/json", 400, '"image"'),
    ("1-D", b'{"image": [1, 2, 3]}', "application/json", 400, "2-D"),
    ("3-D", b'{"image": [[[1, 2, 3]]]}', "application/json", 400, "numbers"),
    ("ragged", b'{"image": [[1, 2], [3]]}', "application/json", 400, "same"),
    ("strings", b'{"image": [["a", "b"]]}', "application/json", 400, "numbers"),
    ("booleans", b'{"image": [[true, false]]}', "application/json", 400, "numbers"),
    ("negative", b'{"image": [[-1, 2]]}', "application/json", 400, "0-255"),
    ("too wide", json.dumps({"image": [[0] * 1025]}).encode(), "application/json", 400, "at most"),
    ("deep nesting", b"[" * 100_000, "application/json", 400, "nested"),
    ("text", b"hello", "text/plain", 415, "not supported"),
    ("form", b"a=1", "application/x-www-form-urlencoded", 415, "not supported"),
    ("gif", b"GIF89a" + bytes(20), "image/gif", 415, "GIF"),
    ("pixel bomb", _png_header(20_000, 20_000) + bytes(64), "image/png", 413, "MP limit"),
]


@pytest.mark.parametrize(("body", "ctype", "status", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_client_mistakes_get_4xx_json(http, url, digits, caplog, body, ctype, status, message):
    if body is None:
        body = png(paper_digit(digits[0][0]))[:200]
    with caplog.at_level(logging.INFO):
        r = post(http, url, "/v1/classify", body, ctype)
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert message in r.json()["error"] and r.json()["status"] == status
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_bad_top_k_and_detect_without_an_image(http, url):
    r = post(http, url, "/v1/classify?top_k=11", b"", "image/png")
    assert r.status_code == 400 and "top_k" in r.json()["error"]
    r = http.post(url + "/v1/detect", json={"image": [[0]]}, timeout=30)
    assert r.status_code == 415 and "image/png or image/jpeg" in r.json()["error"]


def test_oversized_body_is_413_before_it_is_read(http, url):
    r = post(http, url, "/v1/classify", b"\x89PNG" + bytes(MAX_BYTES), "image/png")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    # no Content-Length (chunked): the read is capped, still 413
    r = http.post(
        url + "/v1/classify",
        data=iter([bytes(65536)] * (MAX_BYTES // 65536 + 2)),
        headers={"Content-Type": "image/png"},
        timeout=30,
    )
    assert r.status_code == 413
    # far over: waitress refuses it before buffering the whole body
    r = post(http, url, "/v1/classify", bytes(MAX_BYTES + 2 * 1024 * 1024), "image/png")
    assert r.status_code == 413


def test_decoded_pixel_limit(rec, digits):
    with serve(create_app(rec, max_pixels=100 * 100)) as srv:
        small, big = paper_digit(digits[0][0], scale=2), paper_digit(digits[0][0], scale=6)
        assert small.shape[0] * small.shape[1] <= 100 * 100 < big.shape[0] * big.shape[1]
        assert post(requests, srv.url, "/v1/classify", png(small), "image/png").status_code == 200
        r = post(requests, srv.url, "/v1/classify", png(big), "image/png")
        assert r.status_code == 413 and "MP limit" in r.json()["error"]


def test_unknown_route_404_and_wrong_method_405_as_json(http, url):
    r = http.get(url + "/v2/nothing", timeout=30)
    assert r.status_code == 404 and r.json()["status"] == 404
    r = http.get(url + "/v1/classify", timeout=30)
    assert r.status_code == 405 and r.json()["status"] == 405 and "POST" in r.headers["Allow"]
    r = http.post(url + "/healthz", timeout=30)
    assert r.status_code == 405 and r.headers["Content-Type"] == "application/json"
    assert http.get(url + "/stream.mjpg", timeout=30).status_code == 404  # no camera


def test_healthz_and_model(http, url, rec):
    assert http.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
    m = http.get(url + "/v1/model", timeout=30).json()
    assert m["name"] == rec.model.path.name and m["sha256"] == rec.model.sha256
    assert m["backend"] == rec.model.backend and m["delegate"] == rec.model.delegate == "cpu"
    assert m["input"] == {"shape": [1, 28, 28, 1], "dtype": "int8"}
    assert m["manifest"]["sha256"] == rec.model.sha256


def test_page_without_camera_is_the_upload_form(http, url):
    r = http.get(url + "/", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert 'data-camera="0"' in r.text and 'id="file"' in r.text


# -- API key ----------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed_url(rec):
    with serve(create_app(rec, api_key=KEY)) as srv:
        yield srv.url


def test_api_key_required_when_set(keyed_url, digits):
    body = png(paper_digit(digits[0][0]))
    r = post(requests, keyed_url, "/v1/classify", body, "image/png")
    assert (
        r.status_code == 401 and "API key" in r.json()["error"] and r.headers["WWW-Authenticate"].startswith("Bearer")
    )
    for headers in (
        {"X-API-Key": "wrong"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": "Bearer nope"},
        {"X-API-Key": ""},
    ):
        assert (
            requests.post(
                keyed_url + "/v1/classify", data=body, headers={"Content-Type": "image/png", **headers}, timeout=30
            ).status_code
            == 401
        )
    for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        r = requests.post(
            keyed_url + "/v1/classify", data=body, headers={"Content-Type": "image/png", **headers}, timeout=30
        )
        assert r.status_code == 200 and r.json()["digit"] == digits[0][1]
    # browsers: HTTP Basic with the key as password (the page and the stream)
    r = requests.get(keyed_url + "/", timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(keyed_url + "/", auth=("any", KEY), timeout=30).status_code == 200
    assert requests.get(keyed_url + "/v1/model", timeout=30).status_code == 401
    assert requests.get(keyed_url + "/healthz", timeout=30).status_code == 200  # for health checks


# -- real faults --------------------------------------------------------------
def test_internal_error_is_500_json_without_traceback_and_logged(digits, caplog):
    broken = DigitRecognizer()
    broken.close()  # every invoke now raises EdgeInferError: a fault of the server, not the client
    with serve(create_app(broken)) as srv, caplog.at_level(logging.INFO):
        r = post(requests, srv.url, "/v1/classify", png(paper_digit(digits[0][0])), "image/png")
        health = requests.get(srv.url + "/healthz", timeout=30)
    assert r.status_code == 500 and r.json() == {"error": "internal error; see the server's log", "status": 500}
    assert "Traceback" not in r.text
    assert health.status_code == 503 and health.json()["status"] == 503
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert errors and errors[0].exc_info is not None and "closed" in str(errors[0].exc_info[1])


# -- detect ------------------------------------------------
def scene(digits_and_labels, *, scale: int = 4, seed: int = 0) -> np.ndarray:
    """A photo-like page: all but the last digit written in a row (one number), the last one below.

    Dark ink on light paper with a lighting gradient and sensor noise, BGR.
    """
    rng = np.random.default_rng(seed)
    side = 28 * scale
    step = side * 3 // 4  # MNIST digits fill ~20 of 28 px: neighbours sit close, as in a number
    row = len(digits_and_labels) - 1
    h, w = 2 * side + 90, step * (row - 1) + side + 80
    ink = np.zeros((h, w), np.float32)
    spots = [(30, 40 + i * step) for i in range(row)] + [(side + 60, 40)]
    for (d, _), (y, x) in zip(digits_and_labels, spots):
        glyph = np.kron(d.astype(np.float32) / 255.0, np.ones((scale, scale), np.float32))
        ink[y : y + side, x : x + side] = np.maximum(ink[y : y + side, x : x + side], glyph)
    paper = np.array([225, 230, 235], np.float32) * np.linspace(1.02, 0.85, w, dtype=np.float32)[None, :, None]
    img = paper * (1 - ink[..., None]) + np.array([60, 40, 30], np.float32) * ink[..., None]
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def test_detect_reads_boxes_digits_and_numbers(http, url, digits):
    chosen = [digits[i] for i in (0, 1, 2, 3)]  # 7 2 1 | 0 below
    frame = scene(chosen)
    r = post(http, url, "/v1/detect", png(frame), "image/png")
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["width"], out["height"]) == (frame.shape[1], frame.shape[0])
    assert sorted(d["digit"] for d in out["detections"]) == sorted(label for _, label in chosen)
    for d in out["detections"]:
        x, y, w, h = d["box"]
        assert 0 <= x < x + w <= frame.shape[1] and 0 <= y < y + h <= frame.shape[0] and 0 < d["score"] <= 1
    values = sorted(str(n["value"]) for n in out["numbers"])
    assert values == sorted(["".join(str(label) for _, label in chosen[:3]), str(chosen[3][1])])


def test_detect_roi_reads_only_the_region_in_frame_pixels(http, url, digits):
    chosen = [digits[i] for i in (0, 1, 2, 3)]  # 7 2 1 | 0 below
    frame = scene(chosen)
    whole = post(http, url, "/v1/detect", png(frame), "image/png").json()["detections"]
    lowest = max(whole, key=lambda d: d["box"][1])  # the lone digit on the second line
    x, y, w, h = lowest["box"]
    roi = f"{max(0, x - 15)},{max(0, y - 15)},{w + 30},{h + 30}"
    r = post(http, url, f"/v1/detect?roi={roi}&max_height={h + 30}", png(frame), "image/png")
    assert r.status_code == 200, r.text
    got = r.json()["detections"]
    assert [d["digit"] for d in got] == [lowest["digit"]] and got[0]["box"] == lowest["box"]
    for bad in ("1,2,3", "a,b,c,d", "9999,9999,50,50", "1,2,3,4,5"):
        r = post(http, url, f"/v1/detect?roi={bad}", png(frame), "image/png")
        assert r.status_code == 400 and "roi" in r.json()["error"], (bad, r.text)


def test_detect_fast_flag(http, url, digits):
    chosen = [digits[i] for i in (0, 1, 2, 3)]
    frame = scene(chosen)
    r = post(http, url, "/v1/detect?fast=1", png(frame), "image/png")
    assert r.status_code == 200, r.text
    assert sorted(d["digit"] for d in r.json()["detections"]) == sorted(label for _, label in chosen)
    r = post(http, url, "/v1/detect?fast=yes", png(frame), "image/png")
    assert r.status_code == 400 and "fast must be 0 or 1" in r.json()["error"]


def test_detect_height_limits(http, url, digits):
    chosen = [digits[i] for i in (0, 1, 2, 3)]
    frame = scene(chosen)
    everything = post(http, url, "/v1/detect", png(frame), "image/png").json()["detections"]
    tallest = max(d["box"][3] for d in everything)
    r = post(http, url, f"/v1/detect?max_height={tallest - 1}", png(frame), "image/png")
    assert r.status_code == 200 and len(r.json()["detections"]) < len(everything)
    r = post(http, url, f"/v1/detect?min_height=16&max_height={tallest + 5}", png(frame), "image/png")
    # the same digits in the same boxes (a different height range changes the paper estimate a little)
    assert [(d["box"], d["digit"]) for d in r.json()["detections"]] == [(d["box"], d["digit"]) for d in everything]
    for bad in ("max_height=0", "min_height=-3", "max_height=1e9", "min_height=abc"):
        r = post(http, url, f"/v1/detect?{bad}", png(frame), "image/png")
        assert r.status_code == 400 and "whole number of pixels" in r.json()["error"], bad


# -- the live stream (a generated clip; the browser test uses the bundled one) ----------
@pytest.fixture(scope="module")
def clip(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("clip") / "digits.avi"
    frame0 = scene([digits[i] for i in (0, 1, 2, 3)])
    h, w = frame0.shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for i in range(20):
        out.write(np.roll(frame0, 2 * i, axis=1))
    out.release()
    return path


def read_parts(resp, n: int) -> list[bytes]:
    """The first n JPEGs of a multipart/x-mixed-replace response."""
    buf, parts = b"", []
    for chunk in resp.iter_content(8192):
        buf += chunk
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end].decode()
            length = int(
                next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length"))
            )
            if len(buf) < head_end + 4 + length + 2:
                break
            parts.append(buf[head_end + 4 : head_end + 4 + length])
            buf = buf[head_end + 4 + length + 2 :]
            if len(parts) == n:
                return parts
    return parts


def test_mjpeg_stream_shared_capture_and_clean_stop(rec, clip):
    camera = LiveStream.open(rec, str(clip), idle_stop=0.5)
    # each viewer holds a server thread: room for all of them, one refused, and the API
    srv = serve(create_app(rec, camera=camera), camera=camera, threads=LiveStream.MAX_VIEWERS + 3)
    try:
        r = requests.get(srv.url + "/stream.mjpg", stream=True, timeout=30)
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        parts = read_parts(r, 3)
        assert len(parts) == 3 and len(set(parts)) == 3 and all(p[:2] == b"\xff\xd8" for p in parts)
        assert (
            cv2.imdecode(np.frombuffer(parts[0], np.uint8), cv2.IMREAD_COLOR).shape[:2]
            == (cv2.VideoCapture(str(clip)).read()[1].shape[:2])
        )
        stats = requests.get(srv.url + "/v1/stream", timeout=30).json()
        assert stats["running"] and stats["viewers"] == 1 and stats["frames"] >= 3
        others = [
            requests.get(srv.url + "/stream.mjpg", stream=True, timeout=30) for _ in range(LiveStream.MAX_VIEWERS - 1)
        ]
        busy = requests.get(srv.url + "/stream.mjpg", timeout=10, stream=True)
        assert busy.status_code == 503 and "viewers" in busy.json()["error"]
        assert len(read_parts(others[0], 2)) == 2
        assert sum(t.name == "edge-infer-capture" for t in threading.enumerate()) == 1
        for resp in (r, *others):
            resp.close()
        deadline = time.monotonic() + 10  # the capture stops once nobody watches
        while requests.get(srv.url + "/v1/stream", timeout=30).json()["running"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not requests.get(srv.url + "/v1/stream", timeout=30).json()["running"]
        live = requests.get(srv.url + "/stream.mjpg", stream=True, timeout=30)
        assert len(read_parts(live, 1)) == 1  # and restarts for the next viewer
    finally:
        t0 = time.monotonic()
        srv.stop()  # closes the camera: the open response ends, the server stops promptly
        assert time.monotonic() - t0 < 8
    assert not srv._thread.is_alive()
    assert not any(t.name == "edge-infer-capture" for t in threading.enumerate())


# -- the command --------------------------------------------------------------
def test_import_does_not_load_flask():
    code = "import sys, edge_infer.apps.serve.app; print(sorted({'flask', 'waitress', 'cv2', 'werkzeug'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_cli_serves_on_loopback_and_stops_on_sigterm(digits):
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_infer", "serve", "--port", "0", "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line + proc.stderr.read()
        base = line.split("listening on ")[1].split()[0]
        assert requests.get(base + "/healthz", timeout=30).json() == {"status": "ok"}
        r = post(requests, base, "/v1/classify", png(paper_digit(digits[2][0])), "image/png")
        assert r.json()["digit"] == digits[2][1]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "stopped" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--allow-no-key"),
        (["--max-bytes", "lots"], "not a size"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--camera", "/nonexistent/clip.mp4"], "no such file"),
    ],
)
def test_cli_refuses_bad_settings(args, message):
    r = subprocess.run(
        [sys.executable, "-m", "edge_infer", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "EDGE_INFER_API_KEY"},
    )
    assert r.returncode == 2 and message in r.stderr, r.stderr
