"""A small keep-alive HTTP(S) client to one origin, on the standard library alone.

The agent's store calls are few and plain (a JSON or form body out, a JSON body
back), and it runs in every pod: its start time and memory are features, and
httpx's imports alone cost a vault ``--once`` ~24 ms and ~3 MiB (docs/agent.md). A
:class:`Pool` keeps up to ``size`` :mod:`http.client` connections to one origin
for the agent's reader threads; it connects at the first request, never follows
a redirect (a token would go along), never reads proxy variables, and retries
only a request that met a stale keep-alive connection. What an answer *means* is
the store modules' business.

Failures are :class:`Unreachable` (or :class:`TimedOut`), whose text is the
socket's or TLS library's reason, never anything that was sent.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import msgspec

USER_AGENT = "latchkey-sidecar"
# What a keep-alive connection the server closed while it sat idle raises before
# any byte of an answer: safe to send once more, on a new connection.
STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)
# Characters kept as they are in a request target; any other is percent-encoded.
TARGET_SAFE = "/?&=%:@!$'()*+,;[]~"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Headers(Mapping[str, str]):
    """Header names matched case-insensitively; a repeated header's values joined by ``, ``."""

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items.items() if isinstance(items, Mapping) else items:
            if (seen := self._items.get(name.lower())) is not None:
                name, value = seen[0], f"{seen[1]}, {value}"
            self._items[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


class Request(msgspec.Struct, frozen=True):
    """One request as it goes on the wire: ``target`` is the path and query."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class Response(msgspec.Struct, frozen=True):
    """A whole answer, its body read."""

    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON."""
        return json.loads(self.body)


# Answers a request instead of the network (the tests' seam); may raise what a
# socket would (TimeoutError, ConnectionRefusedError, ssl.SSLError...).
Send = Callable[[Request], Response]


class Unreachable(Exception):
    """No answer: refused, reset, closed early, TLS refused; the text says why."""


class TimedOut(Unreachable):
    """No answer within the timeout: connecting, sending, waiting or reading."""


def split(url: str) -> tuple[str, str]:
    """``scheme://host[:port]/path?query`` as its origin and its target ``/path?query``."""
    parts = urllib.parse.urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return f"{parts.scheme}://{parts.netloc}", target


class Pool:
    """Keep-alive connections to ``origin`` (``https://`` or ``http://``), at most ``size``
    at once; safe to share between threads. A connection whose answer was not read to
    its end, or that failed, is closed rather than kept."""

    def __init__(
        self,
        origin: str,
        *,
        context: ssl.SSLContext,
        timeout: float,
        size: int,
        send: Send | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(origin)
        self._tls = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._host_header = parts.netloc.rpartition("@")[2]
        self._context = context
        self._timeout = timeout
        self._send = send
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._epoch = 0  # one more at each close: connections out then are not kept

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: object = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        """Send ``json`` (or ``form``, URL-encoded) to ``target``; the whole answer,
        whatever its status."""
        request = self._build(method, target, headers or {}, json, form)
        try:
            if self._send is not None:
                return self._send(request)
            return self._pooled(request)
        except TimeoutError as exc:
            raise TimedOut(_why(exc)) from exc
        except (OSError, http.client.HTTPException) as exc:  # ssl.SSLError is an OSError
            raise Unreachable(_why(exc)) from exc

    def close(self) -> None:
        """Close the idle connections, and those in use as they come back."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._epoch += 1
        for connection in idle:
            connection.close()

    def _build(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        payload: object,
        form: Mapping[str, str] | None,
    ) -> Request:
        sent = {"Host": self._host_header, "Accept": "*/*", "User-Agent": USER_AGENT}
        body = b""
        if payload is not None:
            body = _json_bytes(payload)
            sent["Content-Type"] = "application/json"
        elif form is not None:
            body = urllib.parse.urlencode(form).encode("ascii")
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        if body or method in BODY_METHODS:
            sent["Content-Length"] = str(len(body))
        given = Headers(headers)  # replacing a default of the same name, in any case
        defaults = [(name, value) for name, value in sent.items() if name not in given]
        quoted = urllib.parse.quote(target, safe=TARGET_SAFE)
        return Request(method, quoted, Headers([*defaults, *given.items()]), body)

    def _pooled(self, request: Request) -> Response:
        if not self._slots.acquire(timeout=self._timeout):
            raise TimedOut(f"no free connection in {self._timeout:g}s")
        try:
            with self._lock:
                connection = self._idle.pop() if self._idle else self._connection()
                epoch = self._epoch
            response = _exchange(connection, request)
            with self._lock:
                kept = epoch == self._epoch
                if kept:
                    self._idle.append(connection)
            if not kept:
                connection.close()
            return response
        finally:
            self._slots.release()

    def _connection(self) -> http.client.HTTPConnection:
        """A new connection, not yet connected: ``http.client`` connects at its first request."""
        if self._tls:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)


def _exchange(connection: http.client.HTTPConnection, request: Request) -> Response:
    """``request`` over ``connection``, once more on a new one if it was stale."""
    reused = connection.sock is not None
    try:
        try:
            answer = _start(connection, request)
        except STALE:
            if not reused:
                raise
            connection.close()  # the next request connects anew
            answer = _start(connection, request)
        with answer:
            body = answer.read()
    except BaseException:
        connection.close()
        raise
    return Response(answer.status, answer.reason, Headers(answer.getheaders()), body)


def _start(connection: http.client.HTTPConnection, request: Request) -> http.client.HTTPResponse:
    """Send ``request`` and read the answer's status line and headers."""
    connection.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
    for name, value in request.headers.items():
        connection.putheader(name, value)
    connection.endheaders(request.body or None)
    return connection.getresponse()


def _json_bytes(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
