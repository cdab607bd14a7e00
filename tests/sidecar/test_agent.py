"""The agent's passes and its long-running loop, in-process against a real OpenBao:
one read per distinct path, refresh with on-change, leases renewed then read again,
and a store that goes away and comes back empty."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hack.localstore import Issuer, OpenBao
from sidecar.agent import Agent
from tests.polling import wait_for
from tests.sidecar.agent_helpers import App
from tests.sidecar.database import Postgres, grant_database
from tests.sidecar.inproc import make_agent, messages


def test_start_reads_each_path_once_and_writes_everything(app: App) -> None:
    config = app.config(wrapperDir=str(app.workdir / "bin"))
    agent, store, _ = make_agent(config)
    agent.start()
    assert sorted(store.reads) == sorted([app.db_path, app.kv1_path])
    assert app.file("password").read_text() == app.values["password"]
    assert json.loads(app.file("db.json").read_text())["username"] == app.values["username"]
    assert (app.workdir / "state" / "env").read_bytes().startswith(b"API_KEY=")
    assert (app.workdir / "bin" / "latchkey-env").stat().st_mode & 0o777 == 0o555
    assert (app.workdir / "state" / "ready").exists()
    store.close(revoke=True)


def test_many_paths_are_read_concurrently(app: App) -> None:
    for i in range(30):
        app.store.put_kv2(f"{app.name}/many/s{i}", {"n": str(i)})
    files = [{"name": f"s{i}", "path": f"secret/data/{app.name}/many/s{i}"} for i in range(30)]
    agent, store, _ = make_agent(app.config(files=files, env=[]))
    agent.start()
    assert len(store.reads) == 30
    assert all(json.loads(app.file(f"s{i}").read_text()) == {"n": str(i)} for i in range(30))
    store.close(revoke=True)


class Hooks(http.server.BaseHTTPRequestHandler):
    posts: list[str]

    def do_POST(self) -> None:
        self.posts.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, list[str]]]:
    posts: list[str] = []
    handler = type("Handler", (Hooks,), {"posts": posts})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/reload", posts
    server.shutdown()


def test_refresh_rewrites_only_real_changes_and_then_runs_on_change(
    app: App, hook_server: tuple[str, list[str]], running: Callable[[Agent], threading.Event]
) -> None:
    url, posts = hook_server
    agent, store, stream = make_agent(app.config(onChange=[{"kind": "http", "url": url}]))
    running(agent)
    wait_for(lambda: (app.workdir / "state" / "ready").exists())
    wait_for(lambda: len(store.reads) >= 6)  # two refreshes of both paths, nothing changed
    assert posts == []
    inode = app.file("password").stat().st_ino
    app.put_db("user-two", "pw-two-changed")
    wait_for(lambda: app.file("password").read_text() == "pw-two-changed")
    wait_for(lambda: posts == ["/reload"])
    assert app.file("password").stat().st_ino != inode, "replaced atomically, by rename"
    assert (app.workdir / "state" / "alive").exists()
    assert "running on-change actions" in messages(stream)


def test_a_lease_is_renewed_then_read_again_at_its_max_ttl(
    app: App, postgres: Postgres, running: Callable[[Agent], threading.Event]
) -> None:
    path = grant_database(app, postgres, ttl="2s", max_ttl="5s")
    files = [{"name": "db", "path": path}]
    agent, store, stream = make_agent(app.config(files=files, env=[], refreshSeconds=3600))
    running(agent)
    wait_for(lambda: app.file("db").exists())
    first = json.loads(app.file("db").read_text())["username"]
    wait_for(lambda: "lease near its max TTL; reading again" in messages(stream), timeout=15)
    seen = messages(stream)
    assert "lease renewed" in seen
    assert seen.index("lease renewed") < seen.index("lease near its max TTL; reading again")
    wait_for(lambda: json.loads(app.file("db").read_text())["username"] != first)
    assert store.reads.count(path) >= 2


def test_store_restarted_mid_run(
    issuer: Issuer, tmp_path: Path, running: Callable[[Agent], threading.Event]
) -> None:
    """The dev server forgets everything: files stay meanwhile; after re-seeding the
    agent logs in again on its own and writes the new values."""
    store = OpenBao(tmp_path / "openbao")
    store.start()
    store.enable_jwt(issuer)
    store.enable_kv1()
    app = App(store, issuer, tmp_path).seed()
    agent, _, stream = make_agent(app.config())
    running(agent)
    wait_for(lambda: (app.workdir / "state" / "ready").exists())
    before = app.file("password").read_text()
    store.stop()
    wait_for(lambda: "keeping the last good files; will retry" in messages(stream))
    assert app.file("password").read_text() == before
    store.start()
    store.enable_jwt(issuer)
    store.enable_kv1()
    app.seed()
    try:
        wait_for(lambda: app.file("password").read_text() == app.values["password"], timeout=40)
    finally:
        store.stop()
    assert app.values["password"] != before
    assert messages(stream).count("logged in") >= 2
