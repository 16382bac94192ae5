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
import logging
import os
import signal
import sys
import threading
from importlib import resources
from typing import Any

import numpy as np

from ...errors import ClientError, SourceError, StreamBusyError
from ...recognizer import DigitRecognizer
from .mjpeg import LiveStream, read_frame
from .uploads import DEFAULT_MAX_PIXELS, decode_upload, parse_json_image

__all__ = ["ClientError", "Server", "add_arguments", "create_app", "make_server", "run"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
API_KEY_ENV = "EDGE_INFER_API_KEY"
_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BODY_TYPES = ("image/", "application/octet-stream")


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
        camera: An :class:`edge_infer.apps.serve.mjpeg.LiveStream` for ``/stream.mjpg`` and the live page.

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
    page = (resources.files("edge_infer.apps.serve") / "web" / "index.html").read_text(encoding="utf-8")
    page = page.replace('data-camera="0"', f'data-camera="{int(camera is not None)}"')

    app = Flask("edge_infer.apps.serve.app")
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
            return error(
                401,
                "missing or wrong API key: send it as X-API-Key",
                {"WWW-Authenticate": f'{scheme} realm="edge-infer"'},
            )
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
        digits = p.scores[:10]
        order = np.argsort(-digits, kind="stable")[: int(k)]
        return jsonify(
            digit=p.digit,
            score=round(p.score, 4),
            is_digit=p.is_digit,
            not_a_digit_score=round(p.reject_score, 4),
            top_k=[{"digit": int(i), "score": round(float(digits[i]), 4)} for i in order],
        )

    @app.post("/v1/detect")
    def detect() -> Any:
        fast = request.args.get("fast", "0")
        if fast not in ("0", "1"):
            raise ClientError(400, f"fast must be 0 or 1, got {fast!r}")
        heights = {}
        for name in ("min_height", "max_height"):
            value = request.args.get(name)
            if value is not None:
                if not value.isdigit() or not 1 <= int(value) <= 100_000:
                    raise ClientError(400, f"{name} must be a whole number of pixels from 1 to 100000, got {value!r}")
                heights[name] = int(value)
        frame = image_body(json_ok=False)
        try:
            detections, numbers = read_frame(recognizer, frame, fast=fast == "1", **heights)
        except (ValueError, TypeError) as e:
            raise ClientError(400, f"cannot read this image: {e}") from None
        return jsonify(
            width=int(frame.shape[1]),
            height=int(frame.shape[0]),
            detections=[_detection_json(d) for d in detections],
            numbers=[_number_json(n) for n in numbers],
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


def _detection_json(d: Any) -> dict[str, Any]:
    return {"box": [int(v) for v in d.box], "digit": int(d.digit), "score": round(float(d.score), 4)}


def _number_json(n: Any) -> dict[str, Any]:
    """A :class:`edge_infer.detect.full.Number` as JSON: ``value`` is a string (leading zeros kept)."""
    return {
        "box": [int(v) for v in n.box],
        "value": str(n.value),
        "digits": [int(d.digit) for d in n.digits],
        "scores": [round(float(s), 4) for s in n.scores],
    }


# -- serving ----------------------------------------------------------------
class Server:
    """A waitress server for the app: ``serve_forever()`` here, or ``start()`` a thread.

    ``stop()`` may be called from any thread (or a signal handler) and is idempotent.
    """

    def __init__(
        self,
        app: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        threads: int = 4,
        max_body: int = DEFAULT_MAX_BYTES,
        camera: LiveStream | None = None,
    ) -> None:
        from waitress.server import create_server

        # waitress buffers a body before the app sees it: cap that too (the app answers
        # bodies up to this size with its own JSON 413, waitress drops bigger ones).
        self._server = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="edge-infer",
            max_request_body_size=max_body + 1024 * 1024,
            clear_untrusted_proxy_headers=True,
        )
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
                wasyncore.loop(
                    timeout=srv.adj.asyncore_loop_timeout, map=srv._map, use_poll=srv.adj.asyncore_use_poll, count=1
                )
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


def make_server(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    threads: int = 4,
    max_body: int = DEFAULT_MAX_BYTES,
    camera: LiveStream | None = None,
) -> Server:
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
        "--api-key",
        default=None,
        help=f"require this key (X-API-Key or Authorization: Bearer); default ${API_KEY_ENV}, "
        "which is better: a command line is visible to other users",
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
            try:
                camera = LiveStream.open(rec, args.camera)
            except SourceError as e:
                print(f"edge-infer serve: {e}", file=sys.stderr)
                return 1
        try:
            app = create_app(rec, max_bytes=args.max_bytes, api_key=api_key, camera=camera)
            # stream viewers hold a thread each; keep `workers` threads for the API besides them
            extra = LiveStream.MAX_VIEWERS if camera is not None else 0
            server = make_server(
                app, host=args.host, port=args.port, threads=workers + extra + 1, max_body=args.max_bytes, camera=camera
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
