"""Who may send what, checked as soon as a request's headers are in: before its body is read.

:class:`Gate` holds the rules (body size, ``Host`` names, the API key and a per-address
budget of wrong keys); the Flask app asks it in a ``before_request`` hook, and the
waitress server built by :func:`create_guarded_server` asks it from the connection's
parser, so a refused request never has its body buffered (a keyless client cannot make
the server hold 4 MB per connection). The server also:

- answers waitress's own errors (400, 413, 431, 501) with the app's JSON shape;
- closes a connection whose request has not fully arrived ``request_timeout`` seconds after
  it began (slow-loris clients trickling a byte a second), and one that has output waiting
  but has taken nothing for ``send_timeout`` seconds (a stream viewer that stopped reading:
  its response ends and its viewer slot is freed).

Importing this module imports neither Flask nor waitress.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

__all__ = ["MIN_KEY_LENGTH", "Gate", "Refusal", "create_guarded_server"]

log = logging.getLogger(__name__)

MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Refusal:
    """A request answered before the app runs: ``status``, a message and extra headers."""

    status: int
    message: str
    headers: tuple[tuple[str, str], ...] = ()

    def body(self) -> bytes:
        return json.dumps({"error": self.message, "status": self.status}).encode()


@dataclass
class Gate:
    """The rules a request's headers must pass (thread-safe).

    Args:
        api_key: When set, every path but ``/healthz`` needs it (``X-API-Key``,
            ``Authorization: Bearer`` or HTTP Basic with the key as password). At least
            :data:`MIN_KEY_LENGTH` characters.
        max_bytes: Largest request body; a bigger ``Content-Length`` gets 413 at once.
        allowed_hosts: Without a key, ``Host`` names served besides IP literals and
            ``localhost`` (a page elsewhere that rebinds its own name to this machine
            sends its name: refused, 421).
        burst, per_second: Wrong keys an address may send at once, and per second after
            that; beyond it the address gets 429 (whatever key it sends) until the budget
            refills.

    Raises:
        ValueError: A key under :data:`MIN_KEY_LENGTH` characters, or ``max_bytes`` below 1.
    """

    api_key: str | None = None
    max_bytes: int = 4 * 1024 * 1024
    allowed_hosts: Iterable[str] = ()
    burst: float = 10.0
    per_second: float = 1.0
    max_addresses: int = 4096
    _budgets: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.api_key is not None and len(self.api_key) < MIN_KEY_LENGTH:
            raise ValueError(
                f"the API key is {len(self.api_key)} characters; use at least {MIN_KEY_LENGTH} "
                "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')"
            )
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")
        self._key = self.api_key.encode() if self.api_key else None
        self._hosts = frozenset(h.lower().rstrip(".") for h in self.allowed_hosts)

    def check(self, method: str, path: str, header: Callable[[str], str | None], addr: str | None) -> Refusal | None:
        """The refusal for a request with these headers, or None to serve it.

        Args:
            method, path: The request line's.
            header: Looks a header up by name (e.g. ``"X-API-Key"``); None when absent.
            addr: The client's address (for the wrong-key budget and the log).
        """
        length = (header("Content-Length") or "").strip()
        if length.isascii() and length.isdigit() and (len(length) > 18 or int(length) > self.max_bytes):
            shown = length if len(length) <= 18 else f"a {len(length)}-digit number of"
            return Refusal(413, f"request body is {shown} bytes; the limit is {self.max_bytes}")
        if self._key is None:
            host = header("Host")
            if host is not None and not self.host_allowed(host):
                shown = host if len(host) <= 100 else host[:100] + "..."
                return Refusal(
                    421,
                    f"Host {shown!r} is not served without an API key (DNS rebinding); use an IP address or "
                    "localhost, or start the server with an API key or --allow-host NAME",
                )
            return None
        if path == "/healthz":
            return None
        given = _given_key(header)
        scheme = "Bearer" if path.startswith("/v1/") else "Basic"
        unauthorised = Refusal(
            401,
            "missing or wrong API key: send it as X-API-Key",
            (("WWW-Authenticate", f'{scheme} realm="edge-infer"'),),
        )
        wait = self._wait(addr or "?")
        if wait > 0:
            return Refusal(
                429,
                f"too many wrong API keys from {addr}; try again in {math.ceil(wait)} s",
                (("Retry-After", str(math.ceil(wait))),),
            )
        if given is None:
            return unauthorised
        if hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._key):
            return None
        self._spend(addr or "?")
        log.info("wrong API key from %s for %s %s", addr, method, path[:200])
        return unauthorised

    def host_allowed(self, host: str) -> bool:
        """An IP literal, ``localhost`` (or a name under it), or one of ``allowed_hosts``; any port.

        >>> g = Gate()
        >>> [g.host_allowed(h) for h in ("127.0.0.1:8080", "[::1]:80", "localhost", "evil.example", "10.0.0.5")]
        [True, True, True, False, True]
        """
        name = host.strip().lower()
        if name.startswith("["):
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":")[0]
        name = name.rstrip(".")
        if name == "localhost" or name.endswith(".localhost") or name in self._hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _wait(self, addr: str) -> float:
        """Seconds until ``addr`` may try a key again (0: now)."""
        with self._lock:
            got = self._budgets.get(addr)
            if got is None:
                return 0.0
            tokens, stamp = got
            tokens = min(self.burst, tokens + (time.monotonic() - stamp) * self.per_second)
            return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.per_second

    def _spend(self, addr: str) -> None:
        with self._lock:
            now = time.monotonic()
            tokens, stamp = self._budgets.pop(addr, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.per_second) - 1.0
            if len(self._budgets) >= self.max_addresses:  # forget the least recently failing address
                self._budgets.pop(next(iter(self._budgets)))
            self._budgets[addr] = (tokens, now)
        if tokens < 1.0:
            log.info("%s sent %d wrong API keys at once: refusing its keys for a while (429)", addr, int(self.burst))


def _given_key(header: Callable[[str], str | None]) -> str | None:
    given = header("X-API-Key")
    if given is not None:
        return given
    auth = (header("Authorization") or "").strip()
    kind, _, value = auth.partition(" ")
    if kind.lower() == "bearer":
        return value.strip()
    if kind.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(":")[2] if ":" in decoded else None
    return None


# -- waitress ---------------------------------------------------------------------
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
