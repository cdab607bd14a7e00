"""The agent under faults on its own side: the projected token file missing, garbled or
expired; the secrets tmpfs full; SIGTERM in the middle of a write; and clocks that
disagree (the store's far ahead or behind, the agent's own wall clock jumping)."""

from __future__ import annotations

import email.utils
import io
import json
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar.agent import Agent
from sidecar.config import AgentConfig, parse
from sidecar.logs import Log
from sidecar.stores import https
from sidecar.stores.aws import credentials_life
from sidecar.stores.vault import VaultStore
from tests.polling import wait_for
from tests.sidecar.agent_helpers import (
    LOGIN,
    App,
    agent_argv,
    agent_env,
    error_line,
    make_store,
    reply,
    run_agent,
    snapshot,
    temps,
)
from tests.sidecar.inproc import make_agent, messages, records

TEN_YEARS = 10 * 365 * 86400.0


# --- the projected token file ---------------------------------------------------------


def spoil(app: App, how: str) -> None:
    if how == "missing":
        app.token_path.unlink()
    elif how == "garbled":
        app.token_path.write_text("this-is-not-a-jwt")
    elif how == "not-utf8":
        app.token_path.write_bytes(b"\xff\xfe\x00garbage")
    elif how == "expired":
        app.write_token(now=time.time() - 3600)


@pytest.mark.parametrize(
    ("how", "warning"),
    [
        pytest.param("missing", None, id="missing"),
        pytest.param("garbled", "denied login", id="garbled"),
        pytest.param("not-utf8", None, id="not-utf8"),  # unreadable, like missing
        pytest.param("expired", "token is expired", id="expired"),
    ],
)
def test_token_file_spoiled_while_running(
    app: App, running: Callable[[Agent], threading.Event], how: str, warning: str | None
) -> None:
    """The store token in hand keeps serving; a good token file is picked up again."""
    agent, _, stream = make_agent(app.config())
    running(agent)
    wait_for(lambda: (app.workdir / "state" / "ready").exists())
    spoil(app, how)
    app.put_db("user-while-spoiled", "pw-while-spoiled")
    wait_for(lambda: app.file("password").read_text() == "pw-while-spoiled")
    failed = [r for r in records(stream) if r["msg"].startswith("new login failed")]
    if warning is None:
        assert failed == [], "an unreadable file is not a rotation: nothing to log in with"
    else:
        assert failed, "the failed login is logged"
        assert all(warning in r["error"] and r["level"] == "warning" for r in failed)
    logins = messages(stream).count("logged in")
    app.write_token()
    wait_for(lambda: messages(stream).count("logged in") > logins)
    assert temps(app.workdir / "secrets") == []
    app.assert_no_value(stream.getvalue())


@pytest.mark.parametrize(
    ("how", "code", "kind", "needle"),
    [
        pytest.param("garbled", 5, "LoginDenied", "denied login", id="garbled"),
        pytest.param("not-utf8", 3, "TokenError", "not UTF-8 text", id="not-utf8"),
        pytest.param("empty", 3, "TokenError", "is empty", id="empty"),
    ],
)
def test_once_with_a_spoiled_token_file(
    app: App, how: str, code: int, kind: str, needle: str
) -> None:
    if how == "empty":
        app.token_path.write_text("  \n")
    else:
        spoil(app, how)
    done = run_agent("--once", config=app.config())
    assert done.returncode == code, done.stderr
    line = error_line(done.stderr)
    assert (line["error"], line["exit"]) == (kind, code)
    assert needle in line["msg"]
    assert "this-is-not-a-jwt" not in done.stderr
    assert not app.file("password").exists()


# --- the secrets tmpfs full -----------------------------------------------------------


@pytest.fixture
def small_secrets(tmp_path: Path) -> Iterator[tuple[Path, Callable[[], None] | None]]:
    """A 64 KiB tmpfs for the secrets (we run as root); elsewhere, a plain directory and
    a 64 KiB file-size limit on the agent's process instead."""
    mount_point = tmp_path / "secrets"
    mount_point.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "latchkey-test", str(mount_point)]
    mounted = subprocess.run(mount, capture_output=True, check=False).returncode == 0

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    yield mount_point, None if mounted else limit
    if mounted:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_tmpfs_full_keeps_the_last_good_files(
    app: App, small_secrets: tuple[Path, Callable[[], None] | None]
) -> None:
    directory, limit = small_secrets
    config = app.config(env=[])
    config.pop("envFile")
    proc = subprocess.Popen(
        agent_argv(), env=agent_env(config), stderr=subprocess.PIPE, text=True, preexec_fn=limit
    )
    try:
        wait_for(lambda: (app.workdir / "state" / "ready").exists())
        before = snapshot(directory)
        app.put_db("user-big", "P" * 100_000)  # cannot fit: ENOSPC (or EFBIG)
        time.sleep(3)  # a few refreshes, each failing
        assert snapshot(directory) == before
        assert temps(directory) == []
        app.put_db("user-small", "pw-small-again")
        wait_for(lambda: app.file("password").read_text() == "pw-small-again", timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    failed = [json.loads(x) for x in err.splitlines() if "keeping the last good files" in x]
    assert failed, err
    assert all(f"cannot write {directory}/" in f["error"] for f in failed)
    assert any(s in failed[0]["error"] for s in ("No space left", "File too large"))
    assert "P" * 100 not in err


# --- SIGTERM in the middle of a write -------------------------------------------------


def test_sigterm_during_a_write_leaves_whole_files_and_revokes(app: App) -> None:
    """Big files (4 MB each, ten of them) make a rewrite take a while; SIGTERM lands
    while a temp file exists, i.e. mid-write. Every file is then wholly old or new."""
    big = {"old": "o" * 4_000_000, "new": "n" * 4_000_000}
    app.store.put_kv2(f"{app.name}/big", {"blob": big["old"]})
    path = f"secret/data/{app.name}/big"
    files = [{"name": f"big{i}", "path": path} for i in range(10)]
    config = app.config(files=files, env=[], refreshSeconds=1)
    config.pop("envFile")
    secrets = app.workdir / "secrets"
    proc = subprocess.Popen(agent_argv(), env=agent_env(config), stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (app.workdir / "state" / "ready").exists(), timeout=30)
        app.store.put_kv2(f"{app.name}/big", {"blob": big["new"]})
        deadline = time.monotonic() + 20
        while not temps(secrets):
            assert time.monotonic() < deadline, "never caught the agent mid-write"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    contents = {json.loads(f.read_text())["blob"][:1] for f in secrets.iterdir()}
    assert contents <= {"o", "n"}
    assert all(len(json.loads(f.read_text())["blob"]) == 4_000_000 for f in secrets.iterdir())
    assert temps(secrets) == []
    assert app.token_accessors() == [], "the store token is revoked on the way out"
    assert '"store token revoked"' in err


# --- clocks ---------------------------------------------------------------------------


def skewed_store(tmp_path: Path, skew: float, calls: list[tuple[float, str]]) -> VaultStore:
    """A store answering with its clock ``skew`` seconds off (Date, expire_time), handing
    out a renewable 3 s lease on database/creds/app."""

    def handle(request: https.Request) -> https.Response:
        calls.append((time.monotonic(), request.path))
        then = time.time() + skew
        headers = {"Date": email.utils.formatdate(then, usegmt=True)}
        expire = datetime.fromtimestamp(then + 3, UTC).isoformat()
        lease = {"lease_id": "database/creds/app/l1", "lease_duration": 3, "renewable": True}
        if request.path.endswith("/login"):
            return reply(200, LOGIN, headers=headers)
        if request.path.endswith("/renew"):
            return reply(200, {**lease, "expire_time": expire}, headers=headers)
        body = {**lease, "data": {"username": "v-app-1"}}
        return reply(200, body, headers=headers)

    return make_store(tmp_path, handle)


@pytest.mark.parametrize(
    "skew", [pytest.param(TEN_YEARS, id="ten-years-ahead"), pytest.param(-TEN_YEARS, id="behind")]
)
def test_lease_renewal_ignores_both_clocks(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    running: Callable[[Agent], threading.Event],
    skew: float,
) -> None:
    """Renewals follow the relative lease duration on the agent's monotonic clock, with
    the store's clock off by ten years and the agent's own wall clock off the other way."""
    calls: list[tuple[float, str]] = []
    store = skewed_store(tmp_path, skew, calls)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - skew)
    config = parse(AgentConfig, {
        "store": {"kind": "vault", "address": "https://vault.test:8200",
                  "auth": {"audience": "vault"}},
        "role": "app", "tokenPath": str(tmp_path / "token"),
        "secretsDir": str(tmp_path / "secrets"), "stateDir": str(tmp_path / "state"),
        "files": [{"name": "db", "path": "database/creds/app"}], "refreshSeconds": 3600,
    })  # fmt: skip
    stream = io.StringIO()
    running(Agent(config, store, log=Log(stream)))
    wait_for(lambda: sum(1 for _, p in calls if p.endswith("/renew")) >= 2, timeout=8)
    read = next(t for t, p in calls if p.endswith("/creds/app"))
    renewals = [t - read for t, p in calls if p.endswith("/renew")]
    assert 1.8 <= renewals[0] <= 2.6, renewals  # 2/3 of 3 s after the read
    assert 1.8 <= renewals[1] - renewals[0] <= 2.6, renewals
    assert sum(1 for _, p in calls if p.endswith("/creds/app")) == 1, "renewed, not read again"
    assert "lease renewed" in [json.loads(x)["msg"] for x in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "skew",
    [pytest.param(TEN_YEARS, id="sts-ahead"), pytest.param(0.0, id="in-step"),
     pytest.param(-TEN_YEARS, id="sts-behind")],
)  # fmt: skip
def test_aws_credentials_life_is_taken_on_the_store_clock(skew: float) -> None:
    now = time.time() + skew
    issued = {
        "Credentials": {"Expiration": datetime.fromtimestamp(now + 3600, UTC)},
        "ResponseMetadata": {"HTTPHeaders": {"date": email.utils.formatdate(now, usegmt=True)}},
    }
    assert credentials_life(issued) == pytest.approx(3600, abs=1.5)


def test_aws_credentials_life_without_a_date_uses_our_clock() -> None:
    issued = {"Credentials": {"Expiration": datetime.fromtimestamp(time.time() + 900, UTC)}}
    assert credentials_life(issued) == pytest.approx(900, abs=1.5)
