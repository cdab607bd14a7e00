"""What the webhook benchmarks share: the real server process over HTTPS, and /proc readings.

:func:`serving_tls` makes a fresh CA and a ``localhost`` certificate; :func:`webhook_argv`
is ``latchkey-webhook serve`` with the tests' admin config on a loopback port;
:func:`running` starts a server, waits until it listens and stops it afterwards.
The readings (:func:`cpu_seconds`, :func:`rss_kib`) are the kernel's, not the
bench's own estimate.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.procs import terminate, wait_ready  # noqa: E402
from webhook.certs import issue, make_ca, write_pair  # noqa: E402

# A Deployment's pod exactly as the API server sends it, and the tests' admin config.
REVIEW = REPO / "tests/fixtures/reviews/deployment-native.json"
CONFIG = REPO / "tests/fixtures/config.yaml"
Target = tuple[str, int]  # the server's URL and process id


@dataclass(frozen=True)
class ServingTLS:
    """A serving certificate and key on disk, and a client context that trusts them."""

    cert: Path
    key: Path
    trust: ssl.SSLContext
    ca_file: Path


def serving_tls(directory: Path) -> ServingTLS:
    """A fresh CA and a certificate for ``localhost`` under ``directory``."""
    ca = make_ca()
    cert, key = directory / "tls.crt", directory / "tls.key"
    write_pair(issue(ca, ["localhost"]), cert, key)
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    return ServingTLS(cert, key, ssl.create_default_context(cadata=ca.cert_pem.decode()), ca_file)


def webhook_argv(port: int, tls: ServingTLS) -> list[str]:
    """The real webhook, one process, on loopback ``port``."""
    argv = [sys.executable, "-m", "webhook", "serve", "--config", str(CONFIG)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    return [*argv, "--tls-cert-file", str(tls.cert), "--tls-key-file", str(tls.key)]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@contextmanager
def running(argv: list[str], port: int, log: Path) -> Iterator[Target]:
    """A server process while the block runs; its output goes to ``log``."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        what = f"the server on port {port}"
        wait_ready(process, lambda: _listening(port), what=what, log_file=log, timeout=30)
        yield f"https://localhost:{port}", process.pid
    finally:
        terminate(process)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The resident set of a process now (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")
