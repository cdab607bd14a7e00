"""Faults between the agent and a real OpenBao: an HTTPS front that fails on demand,
and a TCP server that accepts and never answers.

The front terminates TLS with a certificate from the store's own CA (so the
agent's config needs only the address changed) and forwards every request to
the real OpenBao, unless a fault is set: answer a status (a 5xx storm, a 429
with ``Retry-After``) to reads, logins or everything, or drop the connection.
It records when each request came, for measuring what the agent waited.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from hack.localstore import OpenBao
from webhook.certs import issue, write_pair

DROP, HANG = 0, -1
HANG_LIMIT = 30.0


@dataclass
class Fault:
    """What to do instead of forwarding: answer ``status`` to requests whose path
    contains ``match``, ``times`` times (None: until cleared). Status ``DROP`` closes
    the connection unanswered; ``HANG`` holds it, silent, until the fault is cleared."""

    status: int
    match: str = "/v1/"
    times: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    payload: bytes = b'{"errors": ["injected fault"]}'


@dataclass
class Seen:
    at: float  # monotonic
    method: str
    path: str
    answered: int


class FaultProxy:
    """An HTTPS front for ``store`` on a free loopback port."""

    def __init__(self, store: OpenBao, workdir: Path) -> None:
        self.store = store
        self.fault: Fault | None = None
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = workdir / "front.crt", workdir / "front.key"
        write_pair(issue(store.ca, ["localhost", "127.0.0.1"]), cert, key)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.address = f"https://localhost:{self._server.server_address[1]}"
        self._upstream = httpx.Client(
            base_url=store.address,
            verify=ssl.create_default_context(cafile=str(store.ca_file)),
            timeout=10,
        )
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def set(self, fault: Fault | None) -> None:
        with self._lock:
            self.fault = fault

    def take(self, path: str) -> Fault | None:
        """The fault for this request, counting it down."""
        with self._lock:
            fault = self.fault
            if fault is None or fault.match not in path:
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.fault = None
            return fault

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        keep = {k: v for k, v in headers.items() if k.lower().startswith("x-vault-")}
        return self._upstream.request(method, path, content=body or None, headers=keep)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            fault = proxy.take(self.path)
            if fault is not None and fault.status in (DROP, HANG):
                proxy.seen.append(Seen(time.monotonic(), self.command, self.path, fault.status))
                until = time.monotonic() + HANG_LIMIT
                while fault.status == HANG and proxy.fault is fault and time.monotonic() < until:
                    time.sleep(0.05)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                status, payload, headers = fault.status, fault.payload, dict(fault.headers)
            else:
                answer = proxy.forward(self.command, self.path, dict(self.headers), body)
                status, payload, headers = answer.status_code, answer.content, {}
            proxy.seen.append(Seen(time.monotonic(), self.command, self.path, status))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _any

    return Handler


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
