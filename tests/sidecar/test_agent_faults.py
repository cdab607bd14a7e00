"""The agent under store faults, with a real OpenBao behind a front that fails on demand:
outages and 5xx storms, a store that accepts and never answers, 429 with Retry-After,
and a secret deleted at the store. Every time: the last good files kept byte for byte
(same inode), no temp file left, the error logged by name, and recovery after."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import OpenBao
from sidecar.agent import Agent
from tests.polling import wait_for
from tests.sidecar.agent_helpers import App, error_line, run_agent, snapshot, temps
from tests.sidecar.fault_proxy import DROP, HANG, Fault, FaultProxy, silent_server
from tests.sidecar.inproc import make_agent, records

RETRYING = "keeping the last good files; will retry"


@pytest.fixture
def proxy(openbao: OpenBao, tmp_path: Path) -> Iterator[FaultProxy]:
    front = FaultProxy(openbao, tmp_path / "front")
    yield front
    front.close()


def via(app: App, address: str, **overrides: Any) -> dict[str, Any]:
    config = app.config(**overrides)
    config["store"]["address"] = address
    return config


def failures(stream: io.StringIO) -> list[dict[str, Any]]:
    return [r for r in records(stream) if r["msg"] == RETRYING]


def start_ready(
    app: App, running: Callable[[Agent], threading.Event], config: dict[str, Any]
) -> io.StringIO:
    agent, _, stream = make_agent(config, timeout=0.5)
    running(agent)
    wait_for(lambda: (app.workdir / "state" / "ready").exists())
    return stream


OUTAGES = [
    pytest.param(Fault(DROP), "unreachable", id="connection-dropped"),
    pytest.param(Fault(HANG), "timed out", id="slow-never-answers"),
    pytest.param(Fault(500), "answered 500", id="500-storm"),
    pytest.param(Fault(502), "answered 502", id="502-storm"),
    pytest.param(Fault(503), "answered 503", id="503-storm"),
]


@pytest.mark.parametrize(("fault", "needle"), OUTAGES)
def test_outage_keeps_the_last_good_files_then_recovers(
    app: App,
    proxy: FaultProxy,
    running: Callable[[Agent], threading.Event],
    fault: Fault,
    needle: str,
) -> None:
    stream = start_ready(app, running, via(app, proxy.address))
    secrets, state = app.workdir / "secrets", app.workdir / "state"
    before = snapshot(secrets)
    env_before = (state / "env").read_bytes()
    proxy.set(fault)
    app.put_db("user-after", "pw-after-the-outage")  # what a good read would now bring
    wait_for(lambda: len(failures(stream)) >= 3)
    assert snapshot(secrets) == before
    assert (state / "env").read_bytes() == env_before
    assert temps(secrets, state) == []
    errors = failures(stream)
    assert all(needle in e["error"] and proxy.address in e["error"] for e in errors)
    assert [e["attempt"] for e in errors[:3]] == [1, 2, 3]
    proxy.set(None)
    wait_for(lambda: app.file("password").read_text() == "pw-after-the-outage", timeout=30)
    assert temps(secrets, state) == []
    app.assert_no_value(stream.getvalue())


# Answers that are not a secret: a standby or an ingress redirecting, an empty answer.
NOT_A_SECRET = [
    pytest.param(Fault(307, headers={"Location": "https://other.example/v1/x"}, payload=b""),
                 "with HTTP 307 (application/json), not an answer", id="307-redirect"),
    pytest.param(Fault(301, headers={"Location": "https://other.example/"}, payload=b""),
                 "with HTTP 301 (application/json), not an answer", id="301-moved"),
    pytest.param(Fault(204, payload=b""), "HTTP 204 and no body", id="204-no-content"),
    pytest.param(Fault(200, payload=b"{}"), "HTTP 200 (application/json) but no data",
                 id="200-empty-object"),
    pytest.param(Fault(200, payload=b'{"data": null}'), "HTTP 200 (application/json) but no data",
                 id="200-null-data"),
    pytest.param(Fault(200, headers={"Content-Type": "text/html"}, payload=b"<html>standby</html>"),
                 "HTTP 200 (text/html), not JSON", id="200-html"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "needle"), NOT_A_SECRET)
def test_an_answer_that_is_not_a_secret_keeps_the_files(
    app: App,
    proxy: FaultProxy,
    running: Callable[[Agent], threading.Event],
    fault: Fault,
    needle: str,
) -> None:
    """Only a 2xx JSON object with data replaces a file: nothing else wipes the last good
    ones, fires the on-change action, or follows a redirect with the token."""
    on_change = [{"kind": "http", "url": "http://127.0.0.1:9/reload"}]  # nobody listens
    stream = start_ready(app, running, via(app, proxy.address, onChange=on_change))
    secrets = app.workdir / "secrets"
    before = snapshot(secrets)
    fault.match = "/v1/secret/data/"
    proxy.set(fault)
    app.put_db("user-after", "pw-never-seen")
    wait_for(lambda: len(failures(stream)) >= 2)
    assert snapshot(secrets) == before
    errors = failures(stream)
    assert needle in errors[0]["error"]
    assert "<html>" not in stream.getvalue()
    assert not [r for r in records(stream) if "on-change" in r["msg"]], "no action fired"
    assert not [s for s in proxy.seen if "other.example" in s.path]
    proxy.set(None)
    wait_for(lambda: app.file("password").read_text() == "pw-never-seen", timeout=30)


def test_once_gives_up_on_a_store_that_never_answers(app: App) -> None:
    """A TCP server that accepts and is silent: each attempt times out, the deadline holds."""
    with silent_server() as address:
        started = time.monotonic()
        done = run_agent("--once", "--deadline", "2", config=via(app, address))
        elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stderr
    line = error_line(done.stderr)
    assert line["error"] == "StoreUnavailable"
    assert "timed out" in line["msg"]
    assert address in line["msg"]
    assert 2.0 <= elapsed < 2 + 2.5, elapsed  # one 2 s timeout (min of 10 s and the deadline)
    assert not (app.workdir / "secrets").exists() or temps(app.workdir / "secrets") == []
    assert not app.file("password").exists()


def retry_gap(proxy: FaultProxy, match: str) -> float:
    """Seconds between the 429 and the next request for the same path."""
    hits = [s for s in proxy.seen if match in s.path]
    refused = next(i for i, s in enumerate(hits) if s.answered == 429)
    return hits[refused + 1].at - hits[refused].at


def test_once_honours_retry_after(app: App, proxy: FaultProxy) -> None:
    proxy.set(Fault(429, match="/v1/secret/", times=1, headers={"Retry-After": "2"}))
    done = run_agent("--once", config=via(app, proxy.address))
    assert done.returncode == 0, done.stderr
    assert app.file("password").read_text() == app.values["password"]
    gap = retry_gap(proxy, "/v1/secret/")
    print(f"--once: next read {gap:.3f}s after a 429 with Retry-After: 2")
    assert 2.0 <= gap < 2.8, f"waited {gap:.3f}s after a 429 with Retry-After: 2"
    retrying = [json.loads(x) for x in done.stderr.splitlines() if '"retrying"' in x]
    assert [r["backoff"] for r in retrying] == [2.0]


def test_long_running_honours_retry_after(
    app: App, proxy: FaultProxy, running: Callable[[Agent], threading.Event]
) -> None:
    stream = start_ready(app, running, via(app, proxy.address))
    proxy.set(Fault(429, match="/v1/secret/", times=1, headers={"Retry-After": "3"}))
    wait_for(lambda: len(failures(stream)) == 1)
    wait_for(lambda: sum(1 for s in proxy.seen if "/v1/secret/" in s.path) >= 4, timeout=15)
    gap = retry_gap(proxy, "/v1/secret/")
    print(f"long-running: next read {gap:.3f}s after a 429 with Retry-After: 3")
    assert 3.0 <= gap < 3.8, f"waited {gap:.3f}s after a 429 with Retry-After: 3"
    assert failures(stream)[0]["backoff"] == 3.0


def _delete(app: App, how: str) -> None:
    targets = {
        "kv2-soft-delete": f"secret/data/{app.name}/db",
        "kv2-metadata-delete": f"secret/metadata/{app.name}/db",
        "kv1-delete": f"kv/{app.name}/api",
    }
    app.store.api("DELETE", targets[how])


@pytest.mark.parametrize(
    ("how", "path_of", "file"),
    [
        pytest.param("kv2-soft-delete", "db_path", "password", id="kv2-soft-delete"),
        pytest.param("kv2-metadata-delete", "db_path", "password", id="kv2-metadata-delete"),
        pytest.param("kv1-delete", "kv1_path", "api.env", id="kv1-delete"),
    ],
)
def test_secret_deleted_at_the_store(
    app: App, running: Callable[[Agent], threading.Event], how: str, path_of: str, file: str
) -> None:
    stream = start_ready(app, running, app.config())
    secrets = app.workdir / "secrets"
    before = snapshot(secrets)
    _delete(app, how)
    wait_for(lambda: len(failures(stream)) >= 2)
    path = getattr(app, path_of)
    first = failures(stream)[0]
    assert f'"{path}"' in first["error"]
    assert snapshot(secrets) == before, "the last good files are kept"
    assert temps(secrets) == []
    app.put_db("user-back", "pw-back-again")
    app.store.put_kv1(f"{app.name}/api", {"api_key": "key-back-again"})
    wait_for(lambda: app.file("password").read_text() == "pw-back-again", timeout=30)
    wait_for(lambda: "key-back-again" in app.file("api.env").read_text())
    assert app.file(file).stat().st_ino != before[file][1]
    assert first["level"] == "error"
