"""The aws store's fault table: what moto cannot be made to say, from a scripted server.

A tiny HTTP server on loopback answers STS (query protocol, XML) and Secrets
Manager (JSON protocol) with scripted statuses and bodies, so botocore parses
real wire answers: throttling, 5xx, expired credentials mid-run, STS refusals,
timeouts. Everything else about the store is tested against moto (test_aws.py).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hack.localstore import free_port
from sidecar.auth import TokenFile
from sidecar.config import AwsStore
from sidecar.errors import (
    AgentError,
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.stores.aws import AwsSecretStore

ROLE = "arn:aws:iam::123456789012:role/app"
GOOD = (200, {"Name": "app/db", "SecretString": '{"user": "app"}'})


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, body (dict -> JSON or STS XML error), a delay."""

    status: int
    body: dict[str, str] | str
    delay: float = 0.0


@dataclass
class Script:
    """What the fake AWS answers next, per API; the default when a queue is empty."""

    sts: deque[Reply] = field(default_factory=deque)
    secrets: deque[Reply] = field(default_factory=deque)
    logins: int = 0


def _sts_credentials(n: int) -> str:
    expires = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        '<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
        "<AssumeRoleWithWebIdentityResult><Credentials>"
        f"<AccessKeyId>ASIAFAKE{n:08d}</AccessKeyId><SecretAccessKey>k{n}</SecretAccessKey>"
        f"<SessionToken>t{n}</SessionToken><Expiration>{expires}</Expiration>"
        "</Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    )


def _sts_error(code: str, message: str) -> str:
    return (
        "<ErrorResponse><Error><Type>Sender</Type>"
        f"<Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
    )


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if b"Action=AssumeRoleWithWebIdentity" in body:
                script.logins += 1
                fresh = Reply(200, _sts_credentials(script.logins))
                reply = script.sts.popleft() if script.sts else fresh
                kind = "text/xml"
            else:
                reply = script.secrets.popleft() if script.secrets else Reply(*GOOD)
                kind = "application/x-amz-json-1.1"
            time.sleep(reply.delay)
            payload = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload.encode())))
                self.end_headers()
                self.wfile.write(payload.encode())
            except OSError:
                pass  # the client gave up (timeout case)

    return Handler


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def endpoint(script: Script) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _store(
    endpoint: str,
    tmp_path: Path,
    *,
    max_attempts: int = 1,
    clock: Callable[[], float] = time.time,
) -> AwsSecretStore:
    token = tmp_path / "token"
    token.write_text("header.payload.signature")
    return AwsSecretStore(
        AwsStore(region="eu-west-1", endpoint_url=endpoint),
        role=ROLE,
        token_file=TokenFile(token),
        log=Log(io.StringIO()),
        timeout=0.5,
        max_attempts=max_attempts,
        clock=clock,
    )


def _json_error(status: int, code: str, message: str = "scripted") -> Reply:
    return Reply(status, {"__type": code, "message": message})


@pytest.mark.parametrize(
    ("sts", "secrets", "error", "words"),
    [
        pytest.param([], [_json_error(400, "ThrottlingException", "Rate exceeded")],
                     StoreUnavailable, ["400", "ThrottlingException"], id="throttled"),
        pytest.param([], [_json_error(429, "TooManyRequestsException")],
                     StoreUnavailable, ["429"], id="429"),
        pytest.param([], [_json_error(500, "InternalServiceError")],
                     StoreUnavailable, ["500", "InternalServiceError"], id="500"),
        pytest.param([], [Reply(503, "<html>Service Unavailable</html>")],
                     StoreUnavailable, ["503"], id="503-html"),
        pytest.param([], [_json_error(400, "AccessDeniedException")],
                     PermissionDenied, ["role/app", "secretsmanager:app/db"], id="access-denied"),
        pytest.param([], [_json_error(400, "DecryptionFailure", "KMS key not usable")],
                     PermissionDenied, ["DecryptionFailure"], id="kms-denied"),
        pytest.param([], [_json_error(400, "ResourceNotFoundException")],
                     SecretNotFound, ["secretsmanager:app/db"], id="not-found"),
        pytest.param([], [_json_error(400, "InvalidRequestException", "marked for deletion")],
                     SecretNotFound, ["marked for deletion"], id="deleted"),
        pytest.param([], [Reply(*GOOD, delay=2.0)],
                     StoreUnavailable, ["timeout", "reading secretsmanager:app/db"], id="timeout"),
        pytest.param([Reply(400, _sts_error("InvalidIdentityToken", "Bad audience"))], [],
                     LoginDenied, ["InvalidIdentityToken", "role/app"], id="sts-invalid-token"),
        pytest.param([Reply(403, _sts_error("AccessDenied", "Not authorized"))], [],
                     LoginDenied, ["AccessDenied", "role/app"], id="sts-denied"),
        pytest.param([Reply(400, _sts_error("IDPCommunicationError", "issuer unreachable"))], [],
                     StoreUnavailable, ["IDPCommunicationError"], id="sts-idp-down"),
        pytest.param([Reply(400, _sts_error("Throttling", "Rate exceeded"))], [],
                     StoreUnavailable, ["Throttling"], id="sts-throttled"),
        pytest.param([], [_json_error(400, "ExpiredTokenException")] * 2,
                     LoginDenied, ["rejected the credentials", "role/app"], id="expired-twice"),
    ],
)  # fmt: skip
def test_fault_table(
    endpoint: str,
    script: Script,
    tmp_path: Path,
    sts: list[Reply],
    secrets: list[Reply],
    error: type[AgentError],
    words: list[str],
) -> None:
    script.sts.extend(sts)
    script.secrets.extend(secrets)
    with pytest.raises(error) as caught:
        _store(endpoint, tmp_path).read("secretsmanager:app/db")
    for word in words:
        assert word in str(caught.value)
    assert "header.payload.signature" not in str(caught.value)


def test_expired_credentials_log_in_again_once(
    endpoint: str, script: Script, tmp_path: Path
) -> None:
    script.secrets.append(_json_error(400, "ExpiredTokenException", "The security token expired"))
    secret = _store(endpoint, tmp_path).read("secretsmanager:app/db")
    assert secret.fields == {"user": "app"}
    assert script.logins == 2


def test_botocore_retries_a_passing_failure(endpoint: str, script: Script, tmp_path: Path) -> None:
    script.secrets.append(_json_error(500, "InternalServiceError"))
    secret = _store(endpoint, tmp_path, max_attempts=2).read("secretsmanager:app/db")
    assert secret.fields == {"user": "app"}
    assert not script.secrets


def test_unreachable_endpoint(tmp_path: Path) -> None:
    store = _store(f"http://127.0.0.1:{free_port()}", tmp_path)
    with pytest.raises(StoreUnavailable, match="unreachable web-identity login"):
        store.login()


def test_old_credentials_serve_while_sts_is_down(
    endpoint: str, script: Script, tmp_path: Path
) -> None:
    now = [time.monotonic()]
    store = _store(endpoint, tmp_path, clock=lambda: now[0])
    store.login()
    now[0] = store.refresh_at + 1  # due for new credentials, old ones still valid
    script.sts.append(Reply(500, _sts_error("InternalFailure", "down")))
    assert store.read("secretsmanager:app/db").fields == {"user": "app"}
    now[0] += 600  # now past expiry: no more serving
    script.sts.append(Reply(500, _sts_error("InternalFailure", "down")))
    with pytest.raises(StoreUnavailable, match="InternalFailure"):
        store.read("secretsmanager:app/db")
