"""Who may send what, checked as soon as a request's headers are in: before its body is read.

:class:`Gate` holds the rules (body size, ``Host`` names, the API key and a per-address
budget of wrong keys). The Flask app asks it in a ``before_request`` hook, and the waitress
server of :mod:`edge_infer.apps.serve.server` asks it from the connection's parser, so a
refused request never has its body buffered (a keyless client cannot make the server hold
4 MB per connection). Pure Python; importing it imports neither Flask nor waitress.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["MIN_KEY_LENGTH", "Gate", "Refusal"]

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
