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
HTTP Basic with the key as password, for browsers). The limits that keep a request's
memory and time bounded (body, decoded size, decodes at once, slow and idle clients)
are described in ``docs/service.md``; :mod:`.guard` checks headers before a body is read.

Importing this module imports neither Flask nor waitress nor OpenCV.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import numpy as np

from ...detect.frames import check_roi
from ...errors import ClientError, SourceError, StreamBusyError
from ...recognizer import DigitRecognizer
from .guard import MIN_KEY_LENGTH, Gate
from .imagecheck import read_header
from .mjpeg import LiveStream, read_frame
from .policy import page_policy
from .server import Server, connection_limit, make_server
from .uploads import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_PIXELS,
    Upload,
    parse_json_image,
    read_upload,
)

__all__ = ["ClientError", "Server", "add_arguments", "create_app", "make_server", "run"]

log = logging.getLogger(__name__)

API_KEY_ENV = "EDGE_INFER_API_KEY"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BODY_TYPES = ("image/", "application/octet-stream")
DECODE_WAIT = 5.0  # seconds a request waits for a decode slot before 503
SMALL_DECODE = 1 << 20  # decodes up to this many bytes need no slot
MAX_JSON_BYTES = 1 << 20  # a JSON image body; json.loads takes ~10x its size
_PAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _query_int(args: Any, name: str, default: int | None, low: int, high: int, what: str) -> int | None:
    """A query value as an int: ASCII digits only, at most 6 of them, within ``low..high``; else 400."""
    value = args.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 6 and low <= int(value) <= high):
        shown = value if len(value) <= 20 else value[:20] + "..."
        raise ClientError(400, f"{name} must be {what} from {low} to {high}, got {shown!r}")
    return int(value)


def _query_roi(args: Any, shape: tuple[int, ...], reduce: int) -> tuple[int, int, int, int] | None:
    """``?roi=x,y,w,h`` in the upload's pixels -> a region of the decoded image, or 400."""
    value = args.get("roi")
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ClientError(400, f"roi must be x,y,w,h: four whole numbers of pixels, got {shown!r}")
    x, y, w, h = (int(p) // reduce for p in parts)
    try:
        return check_roi((x, y, w, h), shape)
    except ValueError as e:
        raise ClientError(400, str(e)) from None


def create_app(
    recognizer: DigitRecognizer,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    workers: int | None = None,
    api_key: str | None = None,
    allowed_hosts: tuple[str, ...] = (),
    camera: LiveStream | None = None,
) -> Any:
    """Builds the Flask app around a recognizer.

    Args:
        recognizer: Shared by all requests; give it ``workers=N`` to serve N at once.
        max_bytes: Largest request body; bigger ones get 413 before they are read.
        max_pixels: Largest image (checked from the header); bigger gets 413.
        max_decoded_bytes: Largest decode (width x height x channels x bytes per sample, from
            the header): a bigger JPEG is read at 1/2, 1/4 or 1/8 size, a bigger PNG gets 413.
        workers: Images decoded and read at once (default: CPU count, at most 4); others
            wait up to :data:`DECODE_WAIT` seconds, then get 503. Peak memory is about
            ``workers x max_decoded_bytes x 2.5``.
        api_key: When set, required on every route but ``/healthz``; at least 16 characters.
        allowed_hosts: Without a key, ``Host`` names served besides IP addresses and localhost.
        camera: An :class:`edge_infer.apps.serve.mjpeg.LiveStream` for ``/stream.mjpg`` and the live page.

    Returns:
        A ``flask.Flask`` app (its gate, for :func:`make_server`, in ``app.extensions["edge_infer.gate"]``).
        The caller owns ``recognizer`` and ``camera`` and closes them.

    Raises:
        ValueError: A limit below 1, or an ``api_key`` shorter than 16 characters.
    """
    from flask import Flask, Response, jsonify, request
    from werkzeug.exceptions import HTTPException

    workers = _default_workers() if workers is None else workers
    if min(max_bytes, max_pixels, max_decoded_bytes, workers) < 1:
        raise ValueError(
            f"max_bytes, max_pixels, max_decoded_bytes and workers must be >= 1, got {max_bytes}, "
            f"{max_pixels}, {max_decoded_bytes} and {workers}"
        )
    gate = Gate(api_key, max_bytes=max_bytes, allowed_hosts=allowed_hosts)
    slots = threading.BoundedSemaphore(workers)
    page = (resources.files("edge_infer.apps.serve") / "web" / "index.html").read_text(encoding="utf-8")
    page = page.replace('data-camera="0"', f'data-camera="{int(camera is not None)}"')
    page_headers = {**_PAGE_HEADERS, "Content-Security-Policy": page_policy(page)}

    app = Flask("edge_infer.apps.serve.app")
    app.config["MAX_CONTENT_LENGTH"] = max_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["edge_infer.gate"] = gate

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
        resp = jsonify(error=message, status=status)
        resp.status_code = status
        resp.headers.update(headers or {})
        return resp

    @app.before_request
    def check_request() -> Any:
        # the server's parser asked the gate already, before the body; this covers other WSGI servers
        refusal = gate.check(request.method, request.path, request.headers.get, request.remote_addr)
        if refusal is not None:
            return error(refusal.status, refusal.message, dict(refusal.headers))
        return None

    @app.after_request
    def security_headers(resp: Any) -> Any:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if resp.mimetype == "text/html":  # a page that sets its own policy (the meter page) keeps it
            for k, v in page_headers.items():
                resp.headers.setdefault(k, v)
        return resp

    def body(limit: int, what: str = "request body") -> bytes:
        if request.content_length is not None and request.content_length > limit:
            raise ClientError(413, f"{what} is {request.content_length} bytes; the limit is {limit}")
        chunks, total = [], 0
        while total <= limit:
            chunk = request.stream.read(min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ClientError(413, f"{what} is over the {limit}-byte limit")
        return b"".join(chunks)

    @contextlib.contextmanager
    def image_in(json_ok: bool) -> Iterator[Upload]:
        """The request's image. One that takes over SMALL_DECODE bytes to decode (or a JSON body
        over SMALL_DECODE / 16) holds one of ``workers`` slots while it is decoded and read, so at
        most ``workers`` big images are in memory at once; small ones never wait for a slot."""
        mime = request.mimetype
        as_json = json_ok and mime == "application/json"
        if not as_json and not mime.startswith(_BODY_TYPES):
            accepted = "image/png or image/jpeg" + (" or application/json" if json_ok else "")
            raise ClientError(415, f"Content-Type {mime or '(none)'} is not supported; send {accepted}")
        if as_json:  # a parsed JSON array takes ~10x its text: send big crops as PNG
            data = body(MAX_JSON_BYTES, "a JSON body")
            cost = 16 * len(data)
        else:
            data = body(max_bytes)  # the header first: bombs and garbage are refused without a slot
            cost = min(read_header(data).decoded_bytes(), max_decoded_bytes) if data else 0
        held = cost > SMALL_DECODE and slots.acquire(timeout=DECODE_WAIT)
        if cost > SMALL_DECODE and not held:
            raise ClientError(503, f"all {workers} decode slots are busy with large images; try again shortly")
        try:
            if as_json:
                img = parse_json_image(data)
                up = Upload(img, img.shape[1], img.shape[0])
            else:
                up = read_upload(data, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
            del data
            yield up
        finally:
            if held:
                slots.release()

    @app.post("/v1/classify")
    def classify() -> Any:
        k = _query_int(request.args, "top_k", 3, 1, 10, "a whole number")
        with image_in(json_ok=True) as up:
            try:
                p = recognizer.classify(up.image)
            except (ValueError, TypeError) as e:  # the image passed the checks above: say why it cannot be read
                raise ClientError(400, f"cannot read a digit in this image: {e}") from None
        digits = p.scores[:10]
        order = np.argsort(-digits, kind="stable")[:k]
        return jsonify(
            digit=p.digit,
            score=round(p.score, 4),
            is_digit=p.is_digit,
            not_a_digit_score=round(p.reject_score, 4),
            top_k=[{"digit": int(i), "score": round(float(digits[i]), 4)} for i in order],
        )

    @app.post("/v1/detect")
    def detect() -> Any:
        fast = _query_int(request.args, "fast", 0, 0, 1, "0 or 1, i.e. a number")
        heights = {}
        for name in ("min_height", "max_height"):
            value = _query_int(request.args, name, None, 1, 100_000, "a whole number of pixels")
            if value is not None:
                heights[name] = value
        with image_in(json_ok=False) as up:
            f = up.reduce  # a JPEG read reduced: heights (asked in the upload's pixels) scaled down, boxes back up
            if f > 1:
                heights = {k: max(1, v // f if k == "min_height" else -(-v // f)) for k, v in heights.items()}
            roi = _query_roi(request.args, up.image.shape, f)
            try:
                detections, numbers = read_frame(recognizer, up.image, fast=fast == 1, roi=roi, **heights)
            except (ValueError, TypeError) as e:
                raise ClientError(400, f"cannot read this image: {e}") from None
            h, w = up.image.shape[:2]
            if f > 1:  # the stored size, turned as the image was (EXIF)
                w, h = (
                    (up.width, up.height)
                    if (h, w) == (-(-up.height // f), -(-up.width // f))
                    else (up.height, up.width)
                )
        return jsonify(
            width=int(w),
            height=int(h),
            reduced=f,
            detections=[_detection_json(d, f) for d in detections],
            numbers=[_number_json(n, f) for n in numbers],
        )

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
        return jsonify(
            name=m.path.name,
            sha256=m.sha256,
            backend=m.backend,
            backend_version=m.backend_version,
            delegate=m.delegate,
            input={"shape": list(m.input.shape), "dtype": str(m.input.dtype)},
            output={"shape": list(m.output.shape), "dtype": str(m.output.dtype)},
            manifest=m.manifest,
        )

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
        return Response(
            frames,
            mimetype=f"multipart/x-mixed-replace; boundary={LiveStream.BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

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


def _detection_json(d: Any, scale: int = 1) -> dict[str, Any]:
    return {"box": [int(v) * scale for v in d.box], "digit": int(d.digit), "score": round(float(d.score), 4)}


def _number_json(n: Any, scale: int = 1) -> dict[str, Any]:
    """A :class:`edge_infer.Number` as JSON: ``value`` is the reading as a string (leading zeros and
    the decimal point kept), ``number`` the same as a float."""
    return {
        "box": [int(v) * scale for v in n.box],
        "value": str(n.value),
        "number": float(n.number),
        "digits": [int(d.digit) for d in n.digits],
        "scores": [round(float(s), 4) for s in n.scores],
    }


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
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else needs --api-key)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    from ..cli import add_model_arguments

    add_model_arguments(parser)  # --num-threads is per worker
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="interpreters, i.e. requests run at once (default: CPU count, at most 4)",
    )
    parser.add_argument(
        "--max-bytes", type=_size, default=DEFAULT_MAX_BYTES, help="largest request body (default 4M; larger gets 413)"
    )
    parser.add_argument(
        "--max-decoded",
        type=_size,
        default=DEFAULT_MAX_DECODED_BYTES,
        help="largest decode, width x height x channels x bytes per sample (default 16M): a larger JPEG "
        "is read at 1/2, 1/4 or 1/8 size, a larger PNG gets 413; memory is about workers x 2.5 x this",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="without an API key, also serve this Host name (IP addresses and localhost always are)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"require this key (X-API-Key or Authorization: Bearer; at least {MIN_KEY_LENGTH} characters); "
        f"default ${API_KEY_ENV}, which is better: a command line is visible to other users",
    )
    parser.add_argument(
        "--allow-no-key",
        action="store_true",
        help="bind beyond localhost without an API key (anyone on the network may use it)",
    )
    parser.add_argument(
        "--camera",
        default=None,
        metavar="SOURCE",
        help="also serve a live annotated stream at /: a camera index, picamera, a video, "
        "an image folder or 'sample' (the bundled clip)",
    )
    parser.add_argument("--meter", default=None, metavar="CONFIG", help="also read a meter: /meter and /v1/meter")


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
    workers = args.workers if args.workers is not None else _default_workers()
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    Gate(api_key)  # a key too short to resist guessing: one line and exit 2, before the model loads
    try:
        import flask  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as e:  # the machine cannot do it: exit 1, like a missing runtime
        print(f"edge-infer serve: needs {e.name}: pip install 'edge-infer[serve]'", file=sys.stderr)
        return 1

    from ...runtime.sysmem import keep_freed_memory

    # the camera's frame-sized blocks stay in the heap for the next frame (see sysmem), but a
    # request's megabytes go back to the system when it ends: the RSS falls back after a burst
    keep_freed_memory(trim_mb=8, mmap_mb=2)
    with DigitRecognizer(args.model, delegate=args.delegate, num_threads=args.num_threads, workers=workers) as rec:
        camera = None
        if args.camera is not None:
            try:
                camera = LiveStream.open(rec, args.camera)
            except SourceError as e:
                print(f"edge-infer serve: {e}", file=sys.stderr)
                return 1
        try:
            app = create_app(
                rec,
                max_bytes=args.max_bytes,
                max_decoded_bytes=args.max_decoded,
                workers=workers,
                api_key=api_key,
                allowed_hosts=tuple(args.allow_host),
                camera=camera,
            )
            if args.meter is not None:  # the meter reader's page and JSON (edge_infer.apps.meter.web)
                from ..meter.web import register

                register(app, args.meter, rec)
            # stream viewers hold a thread each; keep `workers` threads for the API besides them
            extra = LiveStream.MAX_VIEWERS if camera is not None else 0
            server = make_server(
                app,
                host=args.host,
                port=args.port,
                threads=workers + extra + 1,
                max_body=args.max_bytes,
                camera=camera,
                connection_limit=connection_limit(),
            )
        except BaseException:
            if camera is not None:
                camera.close()
            raise
        if not getattr(args, "verbose", 0):  # a queue under load is normal: say so only with -v
            logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: server.stop())
        log.info(
            "model %s on %s (%s), %d worker(s)", rec.model.path.name, rec.model.delegate, rec.model.backend, workers
        )
        print(
            f"edge-infer serve: listening on {server.url} (model {rec.model.path.name}, delegate "
            f"{rec.model.delegate}, {workers} workers{', API key required' if api_key else ''})",
            flush=True,
        )
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            server.stop()
        print("edge-infer serve: stopped", flush=True)
    return 0
