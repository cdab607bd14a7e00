"""The store's error boundary under every fault a real store or network can produce,
served by a function in place of the network; plus the answer parsing and the backoff
it feeds."""

from __future__ import annotations

import io
import json
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import (
    AgentError,
    LoginDenied,
    PermissionDenied,
    RenderError,
    SecretNotFound,
    StoreError,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.retry import Backoff, retry_until
from sidecar.stores import https
from sidecar.stores.vault_wire import parse_secret
from tests.sidecar.agent_helpers import ADDRESS, LOGIN, Handler, make_store, reply

KV2 = {"data": {"data": {"user": "u"}, "metadata": {"version": 3}}}


def answer(status: int, body: object = None, **headers: str) -> https.Response:
    if body is None:
        body = {"errors": [f"error {status} from the store"]}
    return reply(status, body, headers=headers)


def on_read(response: Callable[[], https.Response]) -> Handler:
    """Log-ins succeed, the token is alive, reads get ``response``."""

    def handle(request: https.Request) -> https.Response:
        if request.path.endswith("/login"):
            return answer(200, LOGIN)
        if request.path.endswith("/lookup-self"):
            return answer(200, {"data": {}})
        return response()

    return handle


def raise_(exc: Exception) -> Callable[[], https.Response]:
    def fail() -> https.Response:
        raise exc

    return fail


READ_FAULTS = {
    "403": (lambda: answer(403), PermissionDenied, ['role "app"', '"secret/data/x"', "403 from"]),
    "404": (lambda: answer(404, {"errors": []}), SecretNotFound, ['"secret/data/x"', ADDRESS]),
    "412": (lambda: answer(412), StoreUnavailable, ["412", ADDRESS]),
    "429": (lambda: answer(429, None, **{"Retry-After": "7"}), StoreUnavailable, ["429"]),
    "500": (lambda: answer(500), StoreUnavailable, ["500", "error 500 from the store"]),
    "503": (lambda: answer(503, {"errors": ["Vault is sealed"]}), StoreUnavailable, ["sealed"]),
    "400": (lambda: answer(400), StoreError, ["400"]),
    "timeout": (
        raise_(TimeoutError("The read operation timed out")),
        StoreUnavailable,
        ["timed out"],
    ),
    "connect-timeout": (raise_(TimeoutError("timed out")), StoreUnavailable, ["timed out"]),
    "refused": (
        raise_(ConnectionRefusedError(111, "Connection refused")),
        StoreUnavailable,
        ["unreachable", "Connection refused"],
    ),
    "tls": (
        raise_(
            ssl.SSLCertVerificationError(
                1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
            )
        ),
        StoreUnavailable,
        ["CERTIFICATE_VERIFY_FAILED", ADDRESS],
    ),
    "not-json": (
        lambda: reply(200, text="<html>proxy</html>"),
        StoreUnavailable,
        ["JSON"],
    ),
}


@pytest.mark.parametrize(
    ("response", "error", "needles"),
    [pytest.param(*case, id=name) for name, case in READ_FAULTS.items()],
)
def test_read_faults(
    tmp_path: Path, response: Callable[[], https.Response], error: type, needles: list[str]
) -> None:
    store = make_store(tmp_path, on_read(response))
    with pytest.raises(error) as caught:
        store.read("secret/data/x")
    assert type(caught.value) is error
    for needle in needles:
        assert needle in str(caught.value)
    assert caught.value.__cause__ is not None or isinstance(caught.value, StoreError)


def test_retry_after_is_kept(tmp_path: Path) -> None:
    store = make_store(tmp_path, on_read(lambda: answer(429, None, **{"Retry-After": "7"})))
    with pytest.raises(StoreUnavailable) as caught:
        store.read("secret/data/x")
    assert caught.value.retry_after == 7.0
    assert Backoff(rng=lambda: 0.0).delay(caught.value) == 7.0


def test_transport_errors_are_chained(tmp_path: Path) -> None:
    store = make_store(tmp_path, on_read(raise_(TimeoutError("slow"))))
    with pytest.raises(StoreUnavailable) as caught:
        store.read("secret/data/x")
    assert isinstance(caught.value.__cause__, https.TimedOut)
    assert isinstance(caught.value.__cause__.__cause__, TimeoutError)


@pytest.mark.parametrize("status", [pytest.param(s, id=str(s)) for s in (400, 401, 403, 404)])
def test_login_refusals_are_login_denied(tmp_path: Path, status: int) -> None:
    def handle(request: https.Request) -> https.Response:
        return answer(status, {"errors": ['role "app" could not be found']})

    store = make_store(tmp_path, handle)
    with pytest.raises(LoginDenied) as caught:
        store.login()
    message = str(caught.value)
    assert 'role "app"' in message
    assert 'auth mount "jwt"' in message
    assert "could not be found" in message
    assert "header.payload.signature" not in message


@pytest.mark.parametrize("status", [pytest.param(s, id=str(s)) for s in (429, 500, 503)])
def test_login_outages_are_retryable(tmp_path: Path, status: int) -> None:
    store = make_store(tmp_path, lambda _request: answer(status))
    with pytest.raises(StoreUnavailable):
        store.login()


def test_login_sends_role_and_fresh_jwt_and_namespace(tmp_path: Path) -> None:
    seen: list[https.Request] = []

    def handle(request: https.Request) -> https.Response:
        seen.append(request)
        return answer(200, LOGIN) if request.path.endswith("/login") else answer(200, KV2)

    store = make_store(tmp_path, handle, namespace="team-a")
    assert store.read("secret/data/x").fields == {"user": "u"}
    (tmp_path / "token").write_text("rotated.jwt.value")
    store.login()
    logins = [json.loads(r.body) for r in seen if r.path == "/v1/auth/jwt/login"]
    assert logins == [
        {"role": "app", "jwt": "header.payload.signature"},
        {"role": "app", "jwt": "rotated.jwt.value"},
    ]
    assert all(r.headers["X-Vault-Namespace"] == "team-a" for r in seen)
    read = next(r for r in seen if r.path == "/v1/secret/data/x")
    assert read.headers["X-Vault-Token"] == "s.store-token"


def test_a_forgotten_token_logs_in_again_once(tmp_path: Path) -> None:
    """After a store restart our token is unknown: 403, lookup-self 403, log in, read."""
    calls: list[str] = []
    tokens = iter(["s.old", "s.new"])

    def handle(request: https.Request) -> https.Response:
        calls.append(request.path)
        token = request.headers.get("X-Vault-Token")
        if request.path.endswith("/login"):
            return answer(200, {"auth": {**LOGIN["auth"], "client_token": next(tokens)}})
        if token == "s.old":
            return answer(403, {"errors": ["permission denied"]})
        return answer(200, KV2)

    store = make_store(tmp_path, handle)
    assert store.read("secret/data/x").fields == {"user": "u"}
    assert calls.count("/v1/auth/jwt/login") == 2
    assert calls.count("/v1/auth/token/lookup-self") == 1


@pytest.mark.parametrize(
    ("body", "fields", "scalar"),
    [
        pytest.param({"data": {"a": 1}}, {"a": 1}, False, id="kv1"),
        pytest.param(KV2, {"user": "u"}, False, id="kv2-unwrapped"),
        pytest.param({"data": "plain"}, {"value": "plain"}, True, id="scalar"),
        pytest.param({"data": [1, 2]}, {"value": [1, 2]}, True, id="list"),
        pytest.param(
            {"data": {"data": 1, "metadata": "not-kv2"}},
            {"data": 1, "metadata": "not-kv2"},
            False,
            id="looks-like-kv2-but-is-not",
        ),
    ],
)
def test_parse_secret(body: dict[str, object], fields: object, scalar: bool) -> None:
    secret = parse_secret("p", body, now=100.0)
    assert secret.fields == fields
    assert secret.scalar is scalar
    assert secret.lease is None


def test_parse_secret_lease_and_deleted_version() -> None:
    body = {"lease_id": "database/creds/x/abc", "lease_duration": 60, "renewable": True, "data": {}}
    lease = parse_secret("database/creds/x", body, now=100.0).lease
    assert lease is not None
    assert (lease.lease_id, lease.duration, lease.renewable, lease.expires_at) == (
        "database/creds/x/abc", 60.0, True, 160.0,
    )  # fmt: skip
    deleted = {"data": {"data": None, "metadata": {"deletion_time": "2026-01-01T00:00:00Z"}}}
    with pytest.raises(SecretNotFound, match="no current version"):
        parse_secret("secret/data/x", deleted, now=0)


@given(st.dictionaries(st.text(min_size=1), st.text() | st.integers() | st.booleans()))
def test_kv2_unwrap_gives_back_exactly_the_fields(fields: dict[str, object]) -> None:
    body = {"data": {"data": fields, "metadata": {"version": 1}}}
    assert parse_secret("p", body, now=0).fields == fields


@given(st.integers(min_value=0, max_value=40), st.floats(min_value=0, max_value=1))
def test_backoff_is_full_jitter_under_the_cap(attempt: int, draw: float) -> None:
    backoff = Backoff(base=0.25, cap=30.0, rng=lambda: draw)
    backoff.attempt = attempt
    delay = backoff.delay()
    assert 0 <= delay <= min(30.0, 0.25 * 2**attempt)
    assert delay == pytest.approx(draw * min(30.0, 0.25 * 2**attempt))


@pytest.mark.parametrize(
    ("error", "attempts"),
    [
        pytest.param(RenderError("bad key"), 1, id="not-retryable-fails-at-once"),
        pytest.param(LoginDenied("no"), 1, id="login-denied-fails-at-once"),
        pytest.param(StoreUnavailable("down"), 5, id="unavailable-retried-to-deadline"),
    ],
)
def test_retry_until(error: AgentError, attempts: int) -> None:
    calls: list[float] = []
    slept: list[float] = []
    clock = [0.0]

    def action() -> None:
        calls.append(clock[0])
        raise error

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    backoff = Backoff(base=0.1, rng=lambda: 1.0)
    with pytest.raises(type(error)) as caught:
        retry_until(
            action,
            deadline=3.0,
            log=Log(io.StringIO()),
            backoff=backoff,
            sleep=sleep,
            clock=lambda: clock[0],
        )
    assert len(calls) == attempts
    if attempts > 1:
        assert slept == [0.1, 0.2, 0.4, 0.8]  # the next (1.6) would pass the 3 s deadline
        assert "gave up after" in str(caught.value)
