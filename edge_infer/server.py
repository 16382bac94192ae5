"""Serve digit recognition over HTTP on this device (needs the [serve] extra).

A Flask app (:func:`create_app`) served by waitress, never Flask's debug server:

- ``POST /v1/classify``: one digit, as a PNG/JPEG body (``Content-Type: image/*``) or
  JSON ``{"image": [[...]]}``; answers ``{"digit", "score", "top_k"}``.
- ``POST /v1/detect``: a frame (PNG/JPEG); answers the digits' boxes and the numbers read.
- ``GET /healthz`` (runs the model once: 200, or 503 when it does not answer) and
  ``GET /v1/model`` (manifest, backend, delegate).
- ``GET /`` a small page: an upload form, and with ``--camera`` the live annotated
  stream (``GET /stream.mjpg``, MJPEG) with its figures (``GET /v1/stream``).

Client mistakes get a JSON 4xx and are logged at INFO at most; only real faults are
500s (logged with their traceback, which the client never sees). With an API key set,
every route but ``/healthz`` needs it (``X-API-Key``, ``Authorization: Bearer`` or
HTTP Basic with the key as password, for browsers).

Importing this module imports neither Flask nor waitress nor OpenCV.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import struct
import sys
import threading
from importlib import resources
from typing import Any

import numpy as np

from .mjpeg import LiveStream, StreamBusyError, read_frame
from .recognizer import DigitRecognizer

__all__ = ["ClientError", "Server", "add_arguments", "create_app", "make_server", "run"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
MAX_JSON_SIDE = 1024
API_KEY_ENV = "EDGE_INFER_API_KEY"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BODY_TYPES = ("image/", "application/octet-stream")


class ClientError(Exception):
    """A request the client got wrong: answered with ``status`` and a JSON message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# -- input parsing (pure functions) ------------------------------------------
def image_size(data: bytes) -> tuple[str, int, int]:
    """Reads the format and ``(width, height)`` from a PNG or JPEG header without decoding.

    Raises:
        ClientError: 415 for another image format, 400 for bytes that are no image
            or a header that is cut short.

    >>> image_size(b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I4sII", 13, b"IHDR", 640, 480) + bytes(5))
    ('png', 640, 480)
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ClientError(400, "damaged PNG: no IHDR chunk at the start")
        w, h = struct.unpack(">II", data[16:24])
        return "png", w, h
    if data.startswith(b"\xff\xd8"):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                raise ClientError(400, f"damaged JPEG: no marker at byte {pos}")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                if pos + 9 > len(data):
                    break
                h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return "jpeg", w, h
            if marker == 0xDA or length < 2:  # image data before any frame header
                break
            pos += 2 + length
        raise ClientError(400, "damaged JPEG: no frame header (SOF) found")
    for magic, name in ((b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            raise ClientError(415, f"{name} images are not supported; send PNG or JPEG")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise ClientError(415, "WebP images are not supported; send PNG or JPEG")
    raise ClientError(400, "the body is not a PNG or JPEG image")


def decode_upload(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 grayscale or BGR array, with the pixel count checked first.

    JPEGs are turned upright by their EXIF orientation; transparent PNGs are laid on white.

    Raises:
        ClientError: 400 undecodable, 413 more than ``max_pixels`` pixels, 415 not PNG/JPEG.
    """
    if not data:
        raise ClientError(400, "the body is empty; send a PNG or JPEG image")
    kind, w, h = image_size(data)
    if w == 0 or h == 0:
        raise ClientError(400, f"the {kind.upper()} header says {w}x{h} pixels")
    if w * h > max_pixels:
        raise ClientError(413, f"image is {w}x{h} ({w * h / 1e6:.1f} MP), over the {max_pixels / 1e6:g} MP limit")
    import cv2

    flags = cv2.IMREAD_COLOR if kind == "jpeg" else cv2.IMREAD_UNCHANGED
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ClientError(400, f"the {kind.upper()} image could not be decoded (damaged or truncated)")
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        alpha = img[:, :, 3:].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    elif img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        img = img[:, :, 0]
    return np.ascontiguousarray(img)


def parse_json_image(body: bytes) -> np.ndarray:
    """``{"image": [[...]]}`` -> uint8 (h, w) image.

    Values are pixel intensities 0-255, or 0.0-1.0 when none is above 1. A 28x28 array
    is taken as an MNIST digit, either polarity; other sizes (up to 1024 a side) as a
    crop of one digit.

    Raises:
        ClientError: 400 with what is wrong.

    >>> parse_json_image(b'{"image": [[0, 1], [1, 0.5]]}').tolist()
    [[0, 255], [255, 128]]
    """

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a pixel value")

    try:
        obj = json.loads(body, parse_constant=no_constants)
    except RecursionError:
        raise ClientError(400, "JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ClientError(400, f"bad JSON: {e}") from None
    if not isinstance(obj, dict) or "image" not in obj:
        raise ClientError(400, 'JSON must be an object {"image": [[...], ...]}')
    rows = obj["image"]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
        raise ClientError(400, '"image" must be a non-empty 2-D array (a list of rows)')
    h, w = len(rows), len(rows[0])
    if w == 0 or any(len(r) != w for r in rows):
        raise ClientError(400, '"image" rows must all have the same, non-zero length')
    if h > MAX_JSON_SIDE or w > MAX_JSON_SIDE:
        raise ClientError(400, f'"image" is {h}x{w}; at most {MAX_JSON_SIDE}x{MAX_JSON_SIDE} (28x28 is usual)')
    if any(type(v) not in (int, float) for r in rows for v in r):
        raise ClientError(400, '"image" values must be numbers (0-255, or 0.0-1.0)')
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except OverflowError:
        raise ClientError(400, '"image" has a value out of range; use 0-255 or 0.0-1.0') from None
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 255:
        raise ClientError(400, '"image" values must be finite and within 0-255 (or 0.0-1.0)')
    if arr.max() <= 1.0:
        arr = arr * 255.0
    img = np.rint(arr).astype(np.uint8)
    if img.shape == (28, 28):
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        if border.mean() > 127:  # dark ink on light: MNIST is light on dark
            img = 255 - img
    return img


# -- the app ----------------------------------------------------------------
def create_app(
    recognizer: DigitRecognizer,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    api_key: str | None = None,
    camera: LiveStream | None = None,
) -> Any:
    """Builds the Flask app around a recognizer.

    Args:
        recognizer: Shared by all requests; give it ``workers=N`` to serve N at once.
        max_bytes: Largest request body; bigger ones get 413 before they are read.
        max_pixels: Largest decoded image (checked from the header); bigger gets 413.
        api_key: When set, required on every route but ``/healthz``.
        camera: An :class:`edge_infer.mjpeg.LiveStream` for ``/stream.mjpg`` and the live page.

    Returns:
        A ``flask.Flask`` app. The caller owns ``recognizer`` and ``camera`` and closes them.

    Raises:
        ValueError: ``max_bytes`` or ``max_pixels`` below 1, or an empty ``api_key``.
    """
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    if max_bytes < 1 or max_pixels < 1:
        raise ValueError(f"max_bytes and max_pixels must be >= 1, got {max_bytes} and {max_pixels}")
    if api_key is not None and not api_key:
        raise ValueError("api_key is empty; pass None for no key")
    key = api_key.encode() if api_key else None
    page = (resources.files("edge_infer") / "web" / "index.html").read_text(encoding="utf-8")
    page = page.replace('data-camera="0"', f'data-camera="{int(camera is not None)}"')

    app = Flask("edge_infer.server")
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        resp = jsonify(error=message, status=status)
        resp.status_code = status
        resp.headers.update(headers or {})
        return resp

    def authorised() -> bool:
        given = request.headers.get("X-API-Key")
        auth = request.headers.get("Authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None and request.authorization is not None and request.authorization.type == "basic":
            given = request.authorization.password
        return given is not None and hmac.compare_digest(given.encode(), key or b"")

    @app.before_request
    def check_request() -> Any:
        if key is not None and request.path != "/healthz" and not authorised():
            scheme = "Bearer" if request.path.startswith("/v1/") else "Basic"
            return error(401, "missing or wrong API key: send it as X-API-Key",
                         {"WWW-Authenticate": f'{scheme} realm="edge-infer"'})
        if request.content_length is not None and request.content_length > max_bytes:
            return error(413, f"request body is {request.content_length} bytes; the limit is {max_bytes}")
        return None

    def body() -> bytes:
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = request.stream.read(min(65536, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            raise ClientError(413, f"request body is over the {max_bytes}-byte limit")
        return b"".join(chunks)

    def image_body(json_ok: bool) -> np.ndarray:
        mime = request.mimetype
        if json_ok and mime == "application/json":
            return parse_json_image(body())
        if not mime.startswith(_BODY_TYPES):
            accepted = "image/png or image/jpeg" + (" or application/json" if json_ok else "")
            raise ClientError(415, f"Content-Type {mime or '(none)'} is not supported; send {accepted}")
        return decode_upload(body(), max_pixels=max_pixels)

    @app.post("/v1/classify")
    def classify() -> Any:
        k = request.args.get("top_k", "3")
        if not k.isdigit() or not 1 <= int(k) <= 10:
            raise ClientError(400, f"top_k must be a whole number from 1 to 10, got {k!r}")
        img = image_body(json_ok=True)
        try:
            p = recognizer.classify(img)
        except (ValueError, TypeError) as e:  # the image passed the checks above: say why it cannot be read
            raise ClientError(400, f"cannot read a digit in this image: {e}") from None
        order = np.argsort(-p.scores, kind="stable")[: int(k)]
        return jsonify(digit=p.digit, score=round(p.score, 4),
                       top_k=[{"digit": int(i), "score": round(float(p.scores[i]), 4)} for i in order])

    @app.post("/v1/detect")
    def detect() -> Any:
        frame = image_body(json_ok=False)
        try:
            detections, numbers = read_frame(recognizer, frame)
        except (ValueError, TypeError) as e:
            raise ClientError(400, f"cannot read this image: {e}") from None
        return jsonify(width=int(frame.shape[1]), height=int(frame.shape[0]),
                       detections=[_detection_json(d) for d in detections],
                       numbers=[_number_json(n) for n in numbers])

    probe = np.zeros((28, 28), np.uint8)

    @app.get("/healthz")
    def healthz() -> Any:
        try:  # an interpreter that answers, not just a process that listens
            recognizer.classify(probe)
        except Exception as e:
            log.warning("health check failed: %s", e)
            return error(503, "the model does not answer; see the server's log")
        return jsonify(status="ok")

    @app.get("/v1/model")
    def model() -> Any:
        m = recognizer.model
        return jsonify(name=m.path.name, sha256=m.sha256, backend=m.backend, backend_version=m.backend_version,
                       delegate=m.delegate,
                       input={"shape": list(m.input.shape), "dtype": str(m.input.dtype)},
                       output={"shape": list(m.output.shape), "dtype": str(m.output.dtype)},
                       manifest=m.manifest)

    @app.get("/")
    def index() -> Any:
        return Response(page, mimetype="text/html")

    @app.get("/v1/stream")
    def stream_stats() -> Any:
        if camera is None:
            raise ClientError(404, "no camera: start the server with --camera SOURCE")
        stats = camera.stats()
        stats["numbers"] = [_number_json(n) for n in stats["numbers"]]
        return jsonify(stats)

    @app.get("/stream.mjpg")
    def stream() -> Any:
        if camera is None:
            raise ClientError(404, "no camera: start the server with --camera SOURCE")
        try:
            frames = camera.subscribe()
        except StreamBusyError as e:
            raise ClientError(503, str(e)) from None
        return Response(frames, mimetype=f"multipart/x-mixed-replace; boundary={LiveStream.BOUNDARY}",
                        headers={"Cache-Control": "no-store"})

    @app.errorhandler(ClientError)
    def client_error(e: ClientError) -> Any:
        log.info("%s %s -> %d: %s", request.method, request.path, e.status, e)
        return error(e.status, str(e))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Any:
        headers = {k: v for k, v in e.get_headers() if k.lower() != "content-type"}
        return error(e.code or 500, e.description or e.name, headers)

    @app.errorhandler(Exception)
    def internal_error(e: Exception) -> Any:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error; see the server's log")

    return app


def _detection_json(d: Any) -> dict[str, Any]:
    return {"box": [int(v) for v in d.box], "digit": int(d.digit), "score": round(float(d.score), 4)}


def _number_json(n: Any) -> dict[str, Any]:
    """A :class:`edge_infer.vision.Number` as JSON: ``value`` is a string (leading zeros kept)."""
    return {"box": [int(v) for v in n.box], "value": str(n.value), "digits": [int(d.digit) for d in n.digits],
            "scores": [round(float(s), 4) for s in n.scores]}


# -- serving ----------------------------------------------------------------
class Server:
    """A waitress server for the app: ``serve_forever()`` here, or ``start()`` a thread.

    ``stop()`` may be called from any thread (or a signal handler) and is idempotent.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 8080, threads: int = 4,
                 max_body: int = DEFAULT_MAX_BYTES, camera: LiveStream | None = None) -> None:
        from waitress.server import create_server

        # waitress buffers a body before the app sees it: cap that too (the app answers
        # bodies up to this size with its own JSON 413, waitress drops bigger ones).
        self._server = create_server(app, host=host, port=port, threads=threads, ident="edge-infer",
                                     max_request_body_size=max_body + 1024 * 1024, clear_untrusted_proxy_headers=True)
        self.host, self.port = str(self._server.effective_host), int(self._server.effective_port)
        self._camera = camera
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serves until :meth:`stop`; then closes every connection and worker thread."""
        from waitress import wasyncore

        srv = self._server
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=srv.adj.asyncore_loop_timeout, map=srv._map,
                               use_poll=srv.adj.asyncore_use_poll, count=1)
        finally:
            if self._camera is not None:
                self._camera.close()  # ends the MJPEG responses, freeing their threads
            srv.task_dispatcher.shutdown(timeout=5)
            wasyncore.close_all(srv._map)
            self._done.set()

    def start(self) -> Server:
        """Serves in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="edge-infer-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if not self._done.is_set():
            try:
                self._server.pull_trigger()
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def make_server(app: Any, *, host: str = "127.0.0.1", port: int = 8080, threads: int = 4,
                max_body: int = DEFAULT_MAX_BYTES, camera: LiveStream | None = None) -> Server:
    """A :class:`Server` bound to ``host:port`` (port 0 picks a free one; see ``.port``)."""
    return Server(app, host=host, port=port, threads=threads, max_body=max_body, camera=camera)


# -- the CLI plugin -----------------------------------------------------------
def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2}
    t = text.strip().lower().removesuffix("b")
    try:
        n = int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 4194304, 512K or 4M)") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"size must be >= 1 byte, got {text!r}")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Registers the ``serve`` options."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else needs --api-key)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--model", default=None, help="a .tflite model (default: the shipped int8 model)")
    parser.add_argument("--delegate", default="auto", help="auto, cpu, edgetpu[...], gpu, or a library path")
    parser.add_argument("--num-threads", type=int, default=None, help="interpreter threads per worker")
    parser.add_argument("--workers", type=int, default=None,
                        help="interpreters, i.e. requests run at once (default: CPU count, at most 4)")
    parser.add_argument("--max-bytes", type=_size, default=DEFAULT_MAX_BYTES,
                        help="largest request body (default 4M; larger gets 413)")
    parser.add_argument("--api-key", default=None,
                        help=f"require this key (X-API-Key or Authorization: Bearer); default ${API_KEY_ENV}, "
                             "which is better: a command line is visible to other users")
    parser.add_argument("--allow-no-key", action="store_true",
                        help="bind beyond localhost without an API key (anyone on the network may use it)")
    parser.add_argument("--camera", default=None, metavar="SOURCE",
                        help="also serve a live annotated stream at /: a camera index, picamera, a video, "
                             "an image folder or 'sample' (the bundled clip)")


def run(args: argparse.Namespace) -> int:
    """Runs ``edge-infer serve`` until Ctrl-C or SIGTERM."""
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if args.host not in _LOOPBACK and api_key is None and not args.allow_no_key:
        raise ValueError(
            f"--host {args.host} exposes the service beyond this machine; set an API key "
            f"(${API_KEY_ENV} or --api-key), or pass --allow-no-key to accept that risk"
        )
    if args.port < 0 or args.port > 65535:
        raise ValueError(f"--port must be 0-65535, got {args.port}")
    workers = args.workers if args.workers is not None else max(1, min(4, os.cpu_count() or 1))
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as e:  # the machine cannot do it: exit 1, like a missing runtime
        print(f"edge-infer serve: needs {e.name}: pip install 'edge-infer[serve]'", file=sys.stderr)
        return 1

    with DigitRecognizer(args.model, delegate=args.delegate, num_threads=args.num_threads, workers=workers) as rec:
        camera = None
        if args.camera is not None:
            from .camera import SourceError

            try:
                camera = LiveStream.open(rec, args.camera)
            except SourceError as e:
                print(f"edge-infer serve: {e}", file=sys.stderr)
                return 1
        try:
            app = create_app(rec, max_bytes=args.max_bytes, api_key=api_key, camera=camera)
            # stream viewers hold a thread each; keep `workers` threads for the API besides them
            extra = LiveStream.MAX_VIEWERS if camera is not None else 0
            server = make_server(app, host=args.host, port=args.port, threads=workers + extra + 1,
                                 max_body=args.max_bytes, camera=camera)
        except BaseException:
            if camera is not None:
                camera.close()
            raise
        if not getattr(args, "verbose", 0):  # a queue under load is normal: say so only with -v
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: server.stop())
        log.info("model %s on %s (%s), %d worker(s)", rec.model.path.name, rec.model.delegate, rec.model.backend, workers)
        print(f"edge-infer serve: listening on {server.url} (model {rec.model.path.name}, delegate "
              f"{rec.model.delegate}, {workers} workers{', API key required' if api_key else ''})", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.stop()
        print("edge-infer serve: stopped", flush=True)
    return 0
