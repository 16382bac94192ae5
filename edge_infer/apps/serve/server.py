"""The waitress server for the app: limits set on purpose, headers checked before bodies.

:func:`create_guarded_server` builds waitress's ``TcpWSGIServer`` with a parser that asks the
app's :class:`~edge_infer.apps.serve.guard.Gate` as soon as a request's headers are in (so a
refused request never has its body buffered) and answers waitress's own errors (400, 413, 431,
501) with the app's JSON shape. It also closes a connection whose request has not fully arrived
``request_timeout`` seconds after it began (slow-loris clients trickling a byte a second), and
one that has output waiting but has taken nothing for ``send_timeout`` seconds (a stream viewer
that stopped reading: its response ends and its viewer slot is freed). :class:`Server` runs it
in this thread or another and stops it cleanly.

Importing this module imports neither Flask nor waitress.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from http import HTTPStatus
from typing import Any

from .guard import Gate, Refusal
from .mjpeg import LiveStream
from .uploads import DEFAULT_MAX_BYTES

__all__ = ["Server", "connection_limit", "create_guarded_server", "make_server"]

log = logging.getLogger(__name__)


def create_guarded_server(
    app: Any,
    gate: Gate | None,
    *,
    host: str,
    port: int,
    threads: int,
    max_bytes: int,
    connection_limit: int = 1000,
    channel_timeout: int = 30,
    request_timeout: float = 30.0,
    send_timeout: float = 10.0,
) -> Any:
    """A waitress ``TcpWSGIServer`` for ``app`` with the limits above set on purpose.

    Args:
        gate: Asked once a request's headers are in; None: no check before the app.
        max_bytes: Largest body (waitress refuses bigger ones, chunked too, with JSON 413).
        connection_limit: Open connections at most (then new ones wait in the backlog).
        channel_timeout: Seconds an idle keep-alive connection stays open.
        request_timeout: Seconds from a request's first byte until all of it has arrived.
        send_timeout: Seconds a response may wait for a client that takes nothing.
    """
    from waitress.adjustments import Adjustments
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser, ParsingError
    from waitress.server import TcpWSGIServer
    from waitress.task import ErrorTask, ThreadedTaskDispatcher
    from waitress.utilities import RequestEntityTooLarge

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error  # a gate's Refusal, or one of waitress's own (BadRequest, ...)
            refusal = e if isinstance(e, Refusal) else Refusal(e.code, f"{e.reason}: {e.body}")
            body = refusal.body()
            self.status = f"{refusal.status} {HTTPStatus(refusal.status).phrase}"
            self.response_headers.extend([("Content-Type", "application/json"), *refusal.headers])
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class GuardedParser(HTTPRequestParser):
        channel: Any = None
        completed: bool  # waitress's own attributes, named for the type checker
        error: Any

        def parse_header(self, header_plus: bytes) -> None:
            try:
                super().parse_header(header_plus)
            except ValueError:  # int() of a Content-Length over 4300 digits: a bad request, not a crash
                raise ParsingError("Content-Length is invalid") from None

        def received(self, data: bytes) -> int:
            if self.completed:
                return 0
            before = self.headers_finished
            n = super().received(data)
            if gate is None or before or not self.headers_finished:
                return n
            if self.error is not None and not isinstance(self.error, RequestEntityTooLarge):
                return n
            headers = self.headers
            addr = self.channel.addr[0] if self.channel is not None and self.channel.addr else None
            refusal = gate.check(
                self.command or "", self.path or "", lambda name: headers.get(name.upper().replace("-", "_")), addr
            )
            if refusal is not None:  # answered now; the body (if any) is never read
                self.error = refusal  # waitress only tests it for truth; JsonErrorTask answers it
                self.completed = True
                self.expect_continue = False
                if self.channel is not None:
                    self.channel.refused = True
                return len(data)
            return n

    class GuardedChannel(HTTPChannel):
        error_task_class = JsonErrorTask
        refused = False
        request_started: float | None = None

        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            self.parser_class = self._parser

        def _parser(self, adj: Any) -> GuardedParser:
            p = GuardedParser(adj)
            p.channel = self
            return p

        def received(self, data: bytes) -> bool:
            if self.refused:  # the answer is on its way and the connection closes: drop the rest
                return False
            if self.request is None:
                self.request_started = time.monotonic()
            got = super().received(data)
            if self.request is None:
                self.request_started = None
            return got

    class GuardedServer(TcpWSGIServer):
        channel_class = GuardedChannel

        def maintenance(self, now: float) -> None:
            super().maintenance(now)  # idle keep-alive connections (channel_timeout)
            mono = time.monotonic()
            for ch in list(self.active_channels.values()):
                started = ch.request_started
                if ch.will_close:
                    continue
                if started is not None and not ch.requests and mono - started > request_timeout:
                    log.info("closing %s: its request took over %g s to arrive", ch.addr[0], request_timeout)
                    _drop(ch)
                elif ch.requests and ch.total_outbufs_len and now - ch.last_activity > send_timeout:
                    log.info("closing %s: it took nothing of its response for %g s", ch.addr[0], send_timeout)
                    _drop(ch)

    def _drop(ch: Any) -> None:
        """Resets a connection from maintenance (which runs while the main loop lists its sockets).

        Closing the socket here would free its number for the next accept while the loop still
        holds it, and the old socket's poll result would then close the new connection: so the
        socket is shut down (the poll reports a hang-up) and the loop closes it in its own time;
        SO_LINGER 0 makes that close a reset, dropping what the kernel still holds for the client.
        """
        ch.will_close = True
        try:
            ch.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ch.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):  # gone already
            pass

    adj = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident="edge-infer",
        # waitress refuses a Content-Length >= this before reading (and a chunked body once
        # it grows to it); the gate refuses anything over max_bytes first, with its message
        max_request_body_size=max_bytes + 1,
        connection_limit=connection_limit,
        channel_timeout=channel_timeout,
        cleanup_interval=1,
        outbuf_high_watermark=1024 * 1024,  # a stalled stream viewer buffers 1 MB, then waits
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        clear_untrusted_proxy_headers=True,
        log_socket_errors=False,  # a client that resets or stops reading is not the server's error
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    return GuardedServer(app, {}, True, None, dispatcher=dispatcher, adj=adj)


class Server:
    """A waitress server for the app: ``serve_forever()`` here, or ``start()`` a thread.

    ``stop()`` may be called from any thread (or a signal handler) and is idempotent.
    The app's gate (see :func:`create_app`) checks each request's headers before its
    body is read; the limits are those of :func:`edge_infer.apps.serve.guard.create_guarded_server`.
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
        **limits: Any,
    ) -> None:
        gate = getattr(app, "extensions", {}).get("edge_infer.gate")
        max_body = min(max_body, gate.max_bytes) if gate is not None else max_body
        self._server = create_guarded_server(
            app, gate, host=host, port=port, threads=threads, max_bytes=max_body, **limits
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
    **limits: Any,
) -> Server:
    """A :class:`Server` bound to ``host:port`` (port 0 picks a free one; see ``.port``).

    ``limits``: ``connection_limit``, ``channel_timeout``, ``request_timeout``, ``send_timeout``
    (see :func:`edge_infer.apps.serve.guard.create_guarded_server`).
    """
    return Server(app, host=host, port=port, threads=threads, max_body=max_body, camera=camera, **limits)


def connection_limit(wanted: int = 1000) -> int:
    """``wanted``, or fewer when this process may not open that many files (raising its soft limit first)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted + 100:
        target = wanted + 100 if hard == resource.RLIM_INFINITY else min(hard, wanted + 100)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else max(10, min(wanted, soft - 100))
