"""Slow clients cannot exhaust the webhook: the real server, with a small connection cap,
beside many TLS connections that never send a request and many that trickle their
headers a byte at a time. A normal review still gets through within the API server's
timeout, the server's memory stays bounded, and the hostile connections are closed.
Every loop here is bounded in count and time, and talks to loopback only."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hack.bench.common import REVIEW, rss_kib, running, serving_tls, webhook_argv
from hack.localstore import free_port

CAP, READ_TIMEOUT = 40, 3.0
HOSTILE = 3 * CAP  # of each kind: well past the cap
API_SERVER_TIMEOUT = 5.0
MEMORY_LIMIT_KIB = 256 * 1024  # the Deployment's limit


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    tmp = tmp_path_factory.mktemp("slow")
    tls = serving_tls(tmp)
    port = free_port()
    argv = webhook_argv(port, tls)
    argv += ["--max-connections", str(CAP), "--read-timeout", str(READ_TIMEOUT)]
    with running(argv, port, tmp / "webhook.log") as (url, pid):
        yield url, pid, tls.ca_file


def _tls(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return context.wrap_socket(raw, server_hostname="localhost")


def _closed(conn: ssl.SSLSocket) -> bool:
    """Whether the server closed this connection (a read sees EOF or a reset)."""
    conn.settimeout(0.2)
    try:
        return conn.recv(1) == b""
    except (TimeoutError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True


def test_a_review_gets_through_a_flood_of_slow_clients(server: tuple[str, int, Path]) -> None:
    url, pid, ca_file = server
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(ca_file))
    idle = [_tls(port, context) for _ in range(HOSTILE)]
    trickling = [_tls(port, context) for _ in range(HOSTILE)]
    stop = threading.Event()

    def trickle() -> None:
        head = b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        for index in range(200):  # bounded: at most 200 bytes, 20 s
            if stop.wait(0.1):
                return
            for conn in trickling:
                try:
                    conn.send(head[index % len(head) : index % len(head) + 1])
                except OSError:
                    continue

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        started = time.monotonic()
        with httpx.Client(verify=context, timeout=API_SERVER_TIMEOUT) as client:
            answer = client.post(
                f"{url}/mutate", content=REVIEW.read_bytes(),
                headers={"content-type": "application/json"},
            )  # fmt: skip
        took = time.monotonic() - started
        assert answer.status_code == 200
        assert answer.json()["response"]["allowed"] is True
        assert took < API_SERVER_TIMEOUT
        assert rss_kib(pid) < MEMORY_LIMIT_KIB / 2
        time.sleep(READ_TIMEOUT + 1)  # every hostile connection is past its deadline
        assert all(_closed(conn) for conn in idle), "idle TLS connections are closed"
        assert all(_closed(conn) for conn in trickling), "trickling connections are closed"
        with httpx.Client(verify=context, timeout=API_SERVER_TIMEOUT) as client:
            assert client.get(f"{url}/healthz").status_code == 200
    finally:
        stop.set()
        sender.join(5)
        for conn in [*idle, *trickling]:
            conn.close()


def test_a_complete_request_is_not_cut_by_the_deadline(server: tuple[str, int, Path]) -> None:
    """A keep-alive client sending reviews back to back is served across the deadline."""
    url, _, ca_file = server
    context = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=context, timeout=API_SERVER_TIMEOUT) as client:
        deadline = time.monotonic() + READ_TIMEOUT + 1
        served = 0
        while time.monotonic() < deadline:
            answer = client.post(
                f"{url}/mutate", content=REVIEW.read_bytes(),
                headers={"content-type": "application/json"},
            )  # fmt: skip
            assert answer.status_code == 200
            served += 1
    assert served > 10
