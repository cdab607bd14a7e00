"""The agent's HTTP(S) client against real sockets: keep-alive reuse, at most ``size``
connections, the one retry on a stale connection (and no other), what is sent, TLS
trust, and that nothing is connected before the first request.

The server is scripted per connection (answer, drop unanswered, stall mid-body), so
every transport fault is a real socket's, not a mock's."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sidecar.stores import https
from tests.polling import wait_for
from webhook.certs import KeyPair, issue, make_ca, write_pair

BODY = b'{"ok": true}'
REDIRECT = b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"


@dataclass
class Seen:
    connection: int
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Scripted:
    """A loopback server whose n-th connection follows ``plans[n]``, one action per
    request: ``answer``, ``slow`` (answer after 0.1 s), ``redirect``, ``drop`` (close
    unanswered) or ``stall`` (half a body, then silence); then it closes. Connections
    past the plans are closed at once."""

    plans: list[list[str]]
    tls: ssl.SSLContext | None = None
    seen: list[Seen] = field(default_factory=list)
    accepted: int = 0
    closed_by_client: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            index, self.accepted = self.accepted, self.accepted + 1
            plan = self.plans[index] if index < len(self.plans) else []
            threading.Thread(target=self._serve, args=(conn, index, plan), daemon=True).start()

    def _serve(self, raw: socket.socket, index: int, plan: list[str]) -> None:
        try:
            conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            with conn:
                for action in plan:
                    if not self._read(conn, index):
                        self.closed_by_client += 1
                        return
                    if action == "drop":
                        return
                    conn.sendall(self._answer(action))
                    if action == "stall":  # until the client gives up and closes
                        conn.settimeout(5)
                        self.closed_by_client += conn.recv(1) == b""
                        return
        except OSError:
            return

    def _read(self, conn: socket.socket, index: int) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        line, *fields = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
        while len(body) < int(headers.get("content-length", 0)):
            body += conn.recv(65536)
        self.seen.append(Seen(index, line, headers, body))
        return True

    @staticmethod
    def _answer(action: str) -> bytes:
        if action == "slow":
            time.sleep(0.1)
        if action == "redirect":
            return REDIRECT
        length = 10 if action == "stall" else len(BODY)
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        return head.encode() + (b"{}" if action == "stall" else BODY)


@pytest.fixture
def serve() -> Iterator[list[Scripted]]:
    servers: list[Scripted] = []
    yield servers
    for server in servers:
        server.stop()


def started(
    servers: list[Scripted], *plans: list[str], tls: ssl.SSLContext | None = None
) -> Scripted:
    server = Scripted(list(plans), tls)
    servers.append(server)
    return server


def pool(
    server: Scripted, *, size: int = 4, timeout: float = 5, ca: KeyPair | None = None
) -> https.Pool:
    cadata = ca.cert_pem.decode() if ca else None
    return https.Pool(
        server.origin, context=ssl.create_default_context(cadata=cadata), timeout=timeout, size=size
    )


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return make_ca("https tests")


def serving(ca: KeyPair, names: list[str], tmp_path: Path) -> ssl.SSLContext:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_pair(issue(ca, names), cert, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


# --- keep-alive ---------------------------------------------------------------------


def test_nothing_is_connected_before_the_first_request(serve: list[Scripted]) -> None:
    server = started(serve, ["answer"])
    client = pool(server)
    time.sleep(0.1)
    assert server.accepted == 0
    assert client.request("GET", "/v1/x").status == 200
    assert server.accepted == 1


def test_one_connection_serves_request_after_request_over_tls(
    serve: list[Scripted], ca: KeyPair, tmp_path: Path
) -> None:
    server = started(serve, ["answer"] * 4, tls=serving(ca, ["127.0.0.1"], tmp_path))
    client = pool(server, ca=ca)
    answers = [client.request("GET", f"/v1/{n}") for n in range(3)]
    assert [a.json() for a in answers] == [{"ok": True}] * 3
    assert answers[0].headers["content-type"] == "application/json"
    assert server.accepted == 1
    client.close()  # the server, waiting for a fourth request, sees the connection end
    wait_for(lambda: server.closed_by_client == 1)


def test_at_most_size_connections_at_once(serve: list[Scripted]) -> None:
    server = started(serve, *[["slow"] * 12] * 12)
    client = pool(server, size=3)
    threads = [threading.Thread(target=client.request, args=("GET", "/v1/x")) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(server.seen) == 12
    assert server.accepted <= 3
    assert len({s.connection for s in server.seen}) == server.accepted


# --- the one retry ------------------------------------------------------------------


def test_a_connection_the_server_closed_while_idle_is_retried_once_on_a_new_one(
    serve: list[Scripted],
) -> None:
    server = started(serve, ["answer"], ["answer"])
    client = pool(server)
    client.request("GET", "/v1/a")
    time.sleep(0.1)  # the server has closed the kept connection by now
    assert client.request("POST", "/v1/b", json={"n": 1}).status == 200
    assert [(s.connection, s.line) for s in server.seen] == [
        (0, "GET /v1/a HTTP/1.1"), (1, "POST /v1/b HTTP/1.1"),
    ]  # fmt: skip


def test_only_once(serve: list[Scripted]) -> None:
    server = started(serve, ["answer"], ["drop"])
    client = pool(server)
    client.request("GET", "/v1/a")
    time.sleep(0.1)
    with pytest.raises(https.Unreachable, match="closed connection without response"):
        client.request("GET", "/v1/b")
    assert server.accepted == 2


def test_a_new_connection_dropped_unanswered_is_not_retried(serve: list[Scripted]) -> None:
    server = started(serve, ["drop"])
    with pytest.raises(https.Unreachable, match="closed connection without response"):
        pool(server).request("POST", "/v1/auth/jwt/login", json={"jwt": "hunter2"})
    assert server.accepted == 1


def test_an_answer_not_read_to_its_end_closes_its_connection(serve: list[Scripted]) -> None:
    server = started(serve, ["stall"], ["answer"])
    client = pool(server, timeout=0.3)
    with pytest.raises(https.TimedOut):
        client.request("GET", "/v1/a")
    wait_for(lambda: server.closed_by_client == 1)
    assert client.request("GET", "/v1/b").json() == {"ok": True}
    assert [s.connection for s in server.seen] == [0, 1]


# --- what goes out, what does not ---------------------------------------------------


def test_what_is_sent(serve: list[Scripted]) -> None:
    server = started(serve, ["answer"] * 4)
    client = pool(server)
    client.request("GET", "/v1/secret/data/my app", headers={"X-Vault-Token": "s.t"})
    client.request("POST", "/v1/auth/jwt/login", json={"role": "app", "jwt": "j"})
    client.request("POST", "/token", form={"grant_type": "client_credentials", "scope": "a b"})
    client.request("POST", "/v1/auth/token/revoke-self")
    get, posted, form, empty = server.seen
    assert get.line == "GET /v1/secret/data/my%20app HTTP/1.1"
    assert get.headers["host"] == f"127.0.0.1:{server.port}"
    assert get.headers["x-vault-token"] == "s.t"
    assert get.headers["user-agent"] == https.USER_AGENT
    assert get.headers["accept"] == "*/*"
    assert "content-length" not in get.headers
    assert json.loads(posted.body) == {"role": "app", "jwt": "j"}
    assert posted.headers["content-type"] == "application/json"
    assert posted.headers["content-length"] == str(len(posted.body))
    assert form.body == b"grant_type=client_credentials&scope=a+b"
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert empty.headers["content-length"] == "0"


def test_a_redirect_is_an_answer_not_followed_nor_is_a_proxy(
    serve: list[Scripted], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nobody listens there
    server = started(serve, ["redirect"])
    answer = pool(server).request("GET", "/v1/x")
    assert (answer.status, answer.headers["location"]) == (307, "/elsewhere")
    assert [s.line for s in server.seen] == ["GET /v1/x HTTP/1.1"]


# --- failures -----------------------------------------------------------------------


def test_nobody_listening_is_unreachable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    client = https.Pool(
        f"http://127.0.0.1:{port}", context=ssl.create_default_context(), timeout=5, size=1
    )
    with pytest.raises(https.Unreachable, match="Connection refused"):
        client.request("GET", "/v1/x")


@pytest.mark.parametrize(
    ("names", "says"),
    [
        pytest.param(["127.0.0.1"], "unable to get local issuer certificate", id="other-ca"),
        pytest.param(["elsewhere.test"], "IP address mismatch", id="other-name"),
    ],
)
def test_tls_verification_failures_say_so(
    serve: list[Scripted], ca: KeyPair, tmp_path: Path, names: list[str], says: str
) -> None:
    signer = make_ca("someone else") if names == ["127.0.0.1"] else ca
    server = started(serve, ["answer"], tls=serving(signer, names, tmp_path))
    with pytest.raises(https.Unreachable, match="CERTIFICATE_VERIFY_FAILED") as caught:
        pool(server, ca=ca).request("GET", "/v1/x")
    assert says in str(caught.value)
