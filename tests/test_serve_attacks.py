"""`edge-infer serve` under attack: each refusal pinned against the real app on waitress.

Bombs, floods, slow and idle clients, hostile query values, Host names and keys; and the
attack bench's quick slice (bench/attack.py --quick). Bounded waits only, no timings asserted.
"""

from __future__ import annotations

import json
import logging
import os
import socket
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
from edge_infer.apps.serve.imagecheck import MAX_JPEG_SEGMENTS, read_header
from edge_infer.apps.serve.mjpeg import LiveStream
from edge_infer.apps.serve.uploads import read_upload
from edge_infer.errors import ClientError
from edge_infer.image.io import _decode_png

from .conftest import paper_digit, with_exif_orientation
from .test_server import jpeg, png, scene

KEY = "attack-test-key-0123456789"
MAX_BYTES = 512 * 1024


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_file(w: int, h: int, depth: int, ctype: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def idat_bomb(inflated: int = 64 << 20) -> bytes:
    c = zlib.compressobj(9)
    zero = bytes(1 << 20)
    data = b"".join(c.compress(zero) for _ in range(inflated >> 20)) + c.flush()
    return png_file(100, 100, 8, 0, data)


@pytest.fixture(scope="module")
def rec():
    with DigitRecognizer(workers=2) as r:
        yield r


def serve(app, **kw):
    kw.setdefault("threads", 4)
    return make_server(app, host="127.0.0.1", port=0, **kw).start()


@pytest.fixture(scope="module")
def url(rec):
    app = create_app(rec, max_bytes=MAX_BYTES, max_decoded_bytes=2 * 1024 * 1024)
    with serve(app, max_body=MAX_BYTES, request_timeout=1.0) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def keyed_url(rec):
    with serve(create_app(rec, api_key=KEY, max_bytes=MAX_BYTES), max_body=MAX_BYTES) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def digits(mnist_test):
    x, y = mnist_test
    return [(x[i], int(y[i])) for i in range(10)]


def post(url, path, body, ctype, **kw):
    return requests.post(
        url + path, data=body, headers={"Content-Type": ctype, **kw.pop("headers", {})}, timeout=30, **kw
    )


def raw(port_url: str, head: str, *, rcvbuf: int | None = None) -> socket.socket:
    host, port = port_url.removeprefix("http://").split(":")
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect((host, int(port)))
    s.sendall(head.encode())
    return s


def answer(s: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Reads one whole (small) response from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = s.recv(65536)
        if not more:
            break
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(rest) < int(headers.get("content-length", 0)):
        more = s.recv(65536)
        if not more:
            break
        rest += more
    return int(lines[0].split()[1]), headers, json.loads(rest) if rest else {}


def no_errors(caplog) -> bool:
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- decoded size ---------------------------------------------------------------------
def test_decoded_size_limit_from_the_header_413(url, caplog):
    # the 6000x6600 16-bit RGBA PNG: only the header matters (317 MB decoded)
    header_only = png_file(6000, 6600, 16, 6, zlib.compress(bytes(1000)))
    assert read_header(header_only).decoded_bytes() == 6000 * 6600 * 4 * 2
    with caplog.at_level(logging.INFO):
        r = post(url, "/v1/classify", header_only, "image/png")
    assert r.status_code == 413 and r.json()["status"] == 413, r.text
    assert "decoded-size limit" in r.json()["error"] and "16 bits" in r.json()["error"]
    # an 8-bit PNG over the limit (2 MB here): refused too, a PNG is never decoded reduced
    big = np.full((1000, 1000, 3), 200, np.uint8)
    r = post(url, "/v1/classify", png(big), "image/png")
    assert r.status_code == 413 and "decoded-size limit" in r.json()["error"]
    assert no_errors(caplog)


def test_16_bit_png_without_alpha_is_read_at_8_bits(url, digits):
    paper = paper_digit(digits[0][0], scale=4).astype(np.uint16) * 257
    r = post(url, "/v1/classify", png(paper), "image/png")  # 6 bytes a pixel as 16-bit: counted at 3
    assert r.status_code == 200 and r.json()["digit"] == digits[0][1], r.text


def test_large_jpeg_is_read_reduced_boxes_in_its_own_pixels(url, digits):
    chosen = [digits[i] for i in (0, 1, 2, 3)]
    half = cv2.resize(scene(chosen), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 1.4 MB: read as it is
    frame = cv2.resize(half, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # 5.4 MB as BGR: over 2 MB
    r = post(url, "/v1/detect", jpeg(frame), "image/jpeg")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["reduced"] == 2 and (out["width"], out["height"]) == (frame.shape[1], frame.shape[0])
    at_half = post(url, "/v1/detect", jpeg(half), "image/jpeg").json()
    assert at_half["reduced"] == 1 and len(at_half["detections"]) >= 3
    got, want = sorted(out["detections"], key=lambda d: d["box"]), sorted(at_half["detections"], key=lambda d: d["box"])
    assert [d["digit"] for d in got] == [d["digit"] for d in want]
    for d, d1 in zip(got, want):  # boxes in the uploaded image's pixels: twice those of the half-size image
        assert all(abs(a - 2 * b) <= 12 for a, b in zip(d["box"], d1["box"])), (d, d1)
    # a phone's portrait photo (stored sideways, an EXIF tag to turn it): turned, then the same
    sideways = with_exif_orientation(jpeg(cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)), 8)
    out = post(url, "/v1/detect", sideways, "image/jpeg").json()
    assert out["reduced"] == 2 and (out["width"], out["height"]) == (frame.shape[1], frame.shape[0])
    assert sorted(d["digit"] for d in out["detections"]) == sorted(d["digit"] for d in want)


def test_progressive_jpeg_counts_its_coefficient_buffer():
    img = np.full((3000, 3000, 3), 200, np.uint8)
    prog = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    head = read_header(prog)
    assert head.work_bytes >= 3000 * 3000 * 2  # luma + 2 quarter-size chroma planes, 2 bytes a sample
    with pytest.raises(ClientError, match="progressive.*decoded-size limit") as e:
        read_upload(prog, max_decoded_bytes=16 * 1024 * 1024)
    assert e.value.status == 413
    baseline = cv2.imencode(".jpg", img)[1].tobytes()  # the same photo, baseline: read at 1/2
    assert read_upload(baseline, max_decoded_bytes=16 * 1024 * 1024).reduce == 2


# -- compressed data ------------------------------------------------------------------
def test_idat_bomb_refused_without_inflating_it(url, caplog):
    bomb = idat_bomb()
    with caplog.at_level(logging.INFO):
        r = post(url, "/v1/classify", bomb, "image/png")
    assert r.status_code == 400 and "inflates beyond" in r.json()["error"], r.text
    assert no_errors(caplog)
    with pytest.raises(ValueError, match="inflates beyond"):  # the built-in decoder bounds it too
        _decode_png(bomb)


def test_jpeg_segment_flood_refused(url, digits, caplog):
    ok = jpeg(paper_digit(digits[0][0]))
    flood = ok[:2] + b"\xff\xe1\x00\x02" * (MAX_JPEG_SEGMENTS + 5) + ok[2:]
    with caplog.at_level(logging.INFO):
        r = post(url, "/v1/classify", flood, "image/jpeg")
    assert r.status_code == 400 and "segments" in r.json()["error"], r.text
    # a few extra segments are a normal JPEG (EXIF, ICC): still read
    some = ok[:2] + b"\xff\xe1\x00\x02" * 20 + ok[2:]
    assert post(url, "/v1/classify", some, "image/jpeg").json()["digit"] == digits[0][1]
    assert no_errors(caplog)


# -- query values -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "query",
    [
        "/v1/classify?top_k=%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
        "/v1/detect?min_height=%E2%81%B5",
        "/v1/detect?max_height=" + "9" * 4300,  # past int()'s digit limit
        "/v1/classify?top_k=" + "1" * 5000,
        "/v1/detect?fast=%D9%A1",  # Arabic-Indic one
        "/v1/classify?top_k=+3",
        "/v1/detect?fast=yes",
    ],
)
def test_query_values_strict_400_never_500(url, digits, caplog, query):
    with caplog.at_level(logging.INFO):
        r = post(url, query, png(paper_digit(digits[0][0])), "image/png")
    assert r.status_code == 400 and r.json()["status"] == 400, r.text
    assert len(r.json()["error"]) < 200  # the value is shown cut short
    assert no_errors(caplog)


# -- hosts, headers, keys ---------------------------------------------------------------
def test_without_a_key_only_loopback_and_ip_hosts_are_served(url, rec):
    port = url.rsplit(":", 1)[1]
    r = requests.get(url + "/v1/model", headers={"Host": "attacker.example"}, timeout=30)
    assert r.status_code == 421 and "DNS rebinding" in r.json()["error"], r.text
    assert requests.get(url + "/", headers={"Host": f"rebind.attacker.example:{port}"}, timeout=30).status_code == 421
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "app.localhost"):
        assert requests.get(url + "/v1/model", headers={"Host": host}, timeout=30).status_code == 200, host
    with serve(create_app(rec, allowed_hosts=("pi.lan",))) as srv:  # names the operator allows
        assert requests.get(srv.url + "/v1/model", headers={"Host": "pi.lan:8080"}, timeout=30).status_code == 200
        assert requests.get(srv.url + "/v1/model", headers={"Host": "evil.lan"}, timeout=30).status_code == 421


def test_with_a_key_any_host_with_the_key(keyed_url):
    r = requests.get(keyed_url + "/v1/model", headers={"Host": "pi.example", "X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200


def test_page_security_headers(url):
    r = requests.get(url + "/", timeout=30)
    assert r.status_code == 200
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert requests.get(url + "/healthz", timeout=30).headers["X-Content-Type-Options"] == "nosniff"


def test_short_api_key_refused_at_start(rec):
    with pytest.raises(ValueError, match="at least 16"):
        create_app(rec, api_key="x")
    r = subprocess.run(
        [sys.executable, "-m", "edge_infer", "serve", "--port", "0", "--api-key", "short-key"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "at least 16" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_wrong_keys_logged_with_address_then_throttled(rec, caplog):
    with serve(create_app(rec, api_key=KEY)) as srv, caplog.at_level(logging.INFO):
        codes = [
            requests.get(srv.url + "/v1/model", headers={"X-API-Key": f"guess-{i}"}, timeout=30).status_code
            for i in range(14)
        ]
        throttled = requests.get(srv.url + "/v1/model", headers={"X-API-Key": KEY}, timeout=30)
        other = requests.Session()
        other.mount("http://", requests.adapters.HTTPAdapter())
        s = socket.create_connection((srv.host, srv.port), timeout=10, source_address=("127.0.0.2", 0))
        s.sendall(f"GET /v1/model HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {KEY}\r\n\r\n".encode())
        from_elsewhere = answer(s)[0]
        s.close()
    assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}, codes
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1  # even the right key, for now
    assert from_elsewhere == 200  # the budget is per address
    logged = [r.getMessage() for r in caplog.records if "wrong API key from 127.0.0.1" in r.getMessage()]
    assert len(logged) == 10 and all(r.levelno == logging.INFO for r in caplog.records if "wrong" in r.getMessage())


# -- bodies before they are read ----------------------------------------------------------
def test_oversize_content_length_is_a_json_413_before_the_body(url, caplog):
    s = raw(url, f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_BYTES + 1}\r\n\r\n")
    status, headers, body = answer(s)  # no body was sent: the answer comes from the headers alone
    s.close()
    assert status == 413 and headers["content-type"] == "application/json"
    assert body == {"error": f"request body is {MAX_BYTES + 1} bytes; the limit is {MAX_BYTES}", "status": 413}
    # waitress's own refusals have the same shape: a chunked body over the limit, a bad Content-Length
    r = requests.post(url + "/v1/classify", data=iter([bytes(65536)] * 10), headers={"Content-Type": "image/png"})
    assert r.status_code == 413 and r.json()["status"] == 413
    for bad in ("1x", "9" * 5000):  # the second is past int()'s digit limit: a 400, not a crash
        s = raw(url, f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {bad}\r\n\r\n")
        status, headers, body = answer(s)
        s.close()
        assert status == 400 and headers["content-type"] == "application/json" and body["status"] == 400
    assert no_errors(caplog)


def test_keyless_body_refused_before_it_is_read(keyed_url):
    s = raw(keyed_url, f"POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {MAX_BYTES - 1}\r\n\r\n")
    status, headers, body = answer(s)
    s.close()
    assert status == 401 and body["status"] == 401 and headers["connection"] == "close"


# -- slow and idle clients ----------------------------------------------------------------
def test_slow_request_is_closed_after_request_timeout(url):
    s = raw(url, "POST /v1/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    got = b"x"
    for _ in range(30):  # the fixture's request_timeout is 1 s; maintenance runs every second
        try:
            s.send(b"a")
            s.settimeout(1)
            got = s.recv(100)
            if not got:
                break
        except TimeoutError:
            continue
        except OSError:
            got = b""
            break
    s.close()
    assert got == b""
    assert requests.get(url + "/healthz", timeout=30).status_code == 200


def test_idle_stream_viewers_are_dropped(rec, tmp_path, digits):
    path = tmp_path / "clip.avi"
    frame0 = scene([digits[i] for i in (0, 1, 2, 3)])
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (frame0.shape[1], frame0.shape[0]))
    rng = np.random.default_rng(0)
    for _ in range(10):  # noisy frames: big JPEG parts fill the socket buffers sooner
        out.write(np.clip(frame0 + rng.integers(0, 40, frame0.shape), 0, 255).astype(np.uint8))
    out.release()
    camera = LiveStream.open(rec, str(path), max_fps=30, jpeg_quality=100)
    srv = serve(create_app(rec, camera=camera), camera=camera, threads=LiveStream.MAX_VIEWERS + 3, send_timeout=1.0)
    stuck = []
    try:
        for _ in range(LiveStream.MAX_VIEWERS):  # viewers that never read
            stuck.append(raw(srv.url, "GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", rcvbuf=4096))
        deadline = time.monotonic() + 5
        while requests.get(srv.url + "/v1/stream", timeout=30).json()["viewers"] < LiveStream.MAX_VIEWERS:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        served = None
        for _ in range(120):  # bounded: each stalled viewer is closed once it takes nothing for 1 s
            r = requests.get(srv.url + "/stream.mjpg", stream=True, timeout=30)
            if r.status_code == 200:
                served = next(r.iter_content(1024))
                r.close()
                break
            assert r.status_code == 503 and "viewers" in r.json()["error"]
            time.sleep(0.5)
        assert served and served.startswith(b"--frame")
    finally:
        for s in stuck:
            s.close()
        srv.stop()


# -- the attack bench ---------------------------------------------------------------------
def test_attack_bench_quick_slice(tmp_path):
    out = tmp_path / "attack.json"
    env = {k: v for k, v in os.environ.items() if k != "EDGE_INFER_API_KEY"}
    r = subprocess.run(
        [sys.executable, "bench/attack.py", "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    rows = {row["attack"]: row for row in res["attacks"]}
    expected = {
        "png16_rgba_6000x6600": {"413"},
        "idat_bomb": {"400"},
        "jpeg_segment_flood": {"400"},
        "oversize_content_length": {"413"},
        "keyless_bodies": {"401 before the body"},
        "bad_queries": {"400"},
        "wrong_keys": {"401", "429"},
    }
    for name, statuses in expected.items():
        assert set(rows[name]["outcomes"]) == statuses, rows[name]
    assert rows["slowloris"]["outcomes"].get("connected 20/20") == 1
    for row in rows.values():
        assert row["error_log_lines"] == 0 and row["healthz_ok"] and row["classify_ok"], row


# -- the inflate bound never refuses a real PNG -------------------------------------------
def _adam7_png(img: np.ndarray) -> bytes:
    """An interlaced 8-bit gray PNG, written by hand (OpenCV writes none): every pass, filter 0."""
    h, w = img.shape
    rows = []
    for x0, y0, dx, dy in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        sub = img[y0::dy, x0::dx]
        if sub.size:
            rows += [b"\x00" + r.tobytes() for r in sub]
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )


def test_every_kind_of_png_passes_the_inflate_bound(digits):
    import io

    from PIL import Image

    d = paper_digit(digits[0][0], scale=3)
    gray = cv2.cvtColor(d, cv2.COLOR_BGR2GRAY)

    def pil(mode: str, **kw) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(gray).convert(mode).save(buf, "PNG", **kw)
        return buf.getvalue()

    odd = gray[:37, :53]  # sides that are no multiple of 8: partial Adam7 passes, padded bit rows
    pngs = {
        "interlaced": _adam7_png(odd),
        "1-bit": pil("1"),
        "palette": pil("P"),
        "gray+alpha": pil("LA"),
        "16-bit RGBA": png(np.dstack([d, np.full(d.shape[:2], 255, np.uint8)]).astype(np.uint16) * 257),
        "16-bit gray": png(gray.astype(np.uint16) * 257),
    }
    for name, data in pngs.items():
        up = read_upload(data)
        assert up.image.shape[:2] == ((37, 53) if name == "interlaced" else gray.shape), name
    assert np.array_equal(read_upload(pngs["interlaced"]).image, odd)
    with pytest.raises(ClientError, match="chunks"):  # a chunk flood is refused before libpng
        read_upload(pngs["palette"][:33] + _chunk(b"tEXt", b"a\x00b") * 10_001 + pngs["palette"][33:])


# -- decode slots -------------------------------------------------------------------------
class _HeldDetect:
    """The real recogniser, but ``detect`` waits (bounded) until the test lets it go."""

    def __init__(self, rec) -> None:
        self._rec = rec
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._rec, name)

    def detect(self, frame, **kw):
        self.entered.set()
        self.release.wait(30)
        return self._rec.detect(frame, **kw)


def test_big_decodes_take_one_of_workers_slots_small_ones_none(rec, digits, monkeypatch):
    import edge_infer.apps.serve.app as app_module

    monkeypatch.setattr(app_module, "DECODE_WAIT", 0.2)
    held = _HeldDetect(rec)
    big = jpeg(np.full((1000, 1000, 3), 210, np.uint8))  # 3 MB decoded: needs a slot
    with serve(create_app(held, workers=1)) as srv:
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(post(srv.url, "/v1/detect", big, "image/jpeg").status_code))
        t.start()
        try:
            assert held.entered.wait(30)  # the first big image holds the only slot
            r = post(srv.url, "/v1/detect", big, "image/jpeg")
            assert r.status_code == 503 and "decode slots" in r.json()["error"]
            small = post(srv.url, "/v1/classify", png(paper_digit(digits[0][0])), "image/png")
            assert small.status_code == 200 and small.json()["digit"] == digits[0][1]  # no slot needed
        finally:
            held.release.set()
            t.join(60)
    assert first == [200]
