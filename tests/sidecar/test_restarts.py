"""Crash loops on a real OpenBao: a restarted agent adopts the store token it saved in
``stateDir`` (no pile of tokens), the classic-mode sidecar adopts the init step's
leases (no dynamic secret read twice), and a long-running agent that cannot do its
first write for a reason retrying will not cure exits with the same one line as
``--once``, so the pod shows why instead of an agent retrying forever."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import OpenBao, free_port
from tests.polling import wait_for
from tests.sidecar.agent_helpers import (
    FAILURES,
    App,
    agent_argv,
    agent_env,
    error_line,
    run_agent,
    wrong_config,
)
from tests.sidecar.database import Postgres, grant_database

ADOPTED = "store token from the last run adopted"


class Agent:
    """One long-running ``latchkey-sidecar`` process, its stderr in a file."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(agent_argv(), env=agent_env(config), stderr=out)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log.read_text().splitlines() if x.strip()]

    def said(self, msg: str) -> bool:
        return any(line["msg"] == msg for line in self.lines())

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        if agent.proc.poll() is None:
            agent.kill()


def test_once_restarted_reuses_its_token(app: App) -> None:
    config = app.config()
    for run in range(5):
        done = run_agent("--once", config=config)
        assert done.returncode == 0, done.stderr
        assert (ADOPTED in done.stderr) is (run > 0)
        app.assert_no_value(done.stdout, done.stderr)
    assert len(app.token_accessors()) == 1, "five runs, one store token"
    saved = app.workdir / "state" / "token.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    app.assert_no_value(saved.read_text())
    assert [p.name for p in saved.parent.iterdir() if ".tmp-" in p.name] == []


def test_long_running_killed_reuses_its_token_and_sigterm_revokes_it(
    app: App, agents: list[Agent]
) -> None:
    config = app.config()
    for run in range(4):
        agent = Agent(config, app.workdir / f"agent{run}.log")
        agents.append(agent)
        if run == 0:
            wait_for(lambda: (app.workdir / "state" / "ready").exists())
        else:
            wait_for(lambda: agent.said(ADOPTED))  # noqa: B023 - waited on in this iteration
            wait_for(lambda: agent.said("secrets written"))  # noqa: B023
        if run < 3:
            agent.kill()  # SIGKILL: no chance to revoke, as in an OOM kill or a crash
    assert len(app.token_accessors()) == 1, "four starts, one store token"
    assert agents[-1].stop() == 0
    assert app.token_accessors() == []
    assert not (app.workdir / "state" / "token.json").exists()


def test_a_saved_token_revoked_elsewhere_means_a_new_login(app: App) -> None:
    assert run_agent("--once", config=app.config()).returncode == 0
    [accessor] = app.token_accessors()
    app.store.api("POST", "auth/token/revoke-accessor", {"accessor": accessor})
    done = run_agent("--once", config=app.config())
    assert done.returncode == 0, done.stderr
    assert "saved store token no longer valid; logging in" in done.stderr
    assert len(app.token_accessors()) == 1
    assert app.token_accessors() != [accessor]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{not json", id="garbled"),
        pytest.param('{"token": 1}', id="fields-missing"),
        pytest.param("[]", id="not-an-object"),
    ],
)
def test_a_spoiled_state_file_is_ignored(app: App, content: str) -> None:
    state = app.workdir / "state"
    state.mkdir()
    (state / "token.json").write_text(content)
    done = run_agent("--once", config=app.config())
    assert done.returncode == 0, done.stderr
    assert len(app.token_accessors()) == 1
    assert json.loads((state / "token.json").read_text())["accessor"] == app.token_accessors()[0]


def db_leases(store: OpenBao, role: str) -> list[str]:
    try:
        found = store.api("LIST", f"sys/leases/lookup/database/creds/{role}")
    except RuntimeError:  # 404: no lease under that prefix
        return []
    return list(found["data"]["keys"])


def test_init_then_sidecar_reads_a_dynamic_secret_once(
    app: App, postgres: Postgres, agents: list[Agent]
) -> None:
    """Classic mode: init (--once) leases database creds; the sidecar, and the sidecar
    restarted after a crash, adopt that lease and renew it; SIGTERM revokes it."""
    role = f"db-{app.name}"
    path = grant_database(app, postgres, ttl="6s", max_ttl="1h")
    config = app.config(files=[{"name": "db", "path": path}], env=[], refreshSeconds=3600)
    config.pop("envFile")
    init = run_agent("--once", config=config)
    assert init.returncode == 0, init.stderr
    written = app.file("db").read_bytes(), app.file("db").stat().st_ino
    assert len(db_leases(app.store, role)) == 1
    leases = json.loads((app.workdir / "state" / "leases.json").read_text())
    assert list(leases["leases"]) == [path]
    assert json.loads(written[0])["password"] not in json.dumps(leases)
    for run in range(2):
        sidecar = Agent(config, app.workdir / f"sidecar{run}.log")
        agents.append(sidecar)
        wait_for(lambda: sidecar.said("leases from the last run adopted"))  # noqa: B023
        wait_for(lambda: sidecar.said("lease renewed"), timeout=15)  # noqa: B023
        if run == 0:
            sidecar.kill()
    assert len(db_leases(app.store, role)) == 1, "one lease for init, sidecar and restart"
    assert (app.file("db").read_bytes(), app.file("db").stat().st_ino) == written
    assert len(app.token_accessors()) == 1
    assert agents[-1].stop() == 0
    # OpenBao revokes a token's leases in the background after revoke-self answers.
    wait_for(lambda: db_leases(app.store, role) == [], timeout=10)  # revoked with the token


@pytest.mark.parametrize(
    ("change", "code", "kind", "needles"),
    [pytest.param(*case, id=name) for name, case in FAILURES.items()],
)
def test_long_running_fails_fast_before_its_first_write(
    app: App, change: str, code: int, kind: str, needles: list[str]
) -> None:
    started = time.monotonic()
    done = run_agent(config=wrong_config(app, change), timeout=30)
    assert done.returncode == code, done.stderr
    assert time.monotonic() - started < 10
    line = error_line(done.stderr)
    assert (line["error"], line["exit"]) == (kind, code)
    assert all(needle in line["msg"] for needle in needles)
    assert len(done.stderr.strip().splitlines()) == 1, "one clear line, as with --once"
    app.assert_no_value(done.stdout, done.stderr)
    assert not (app.workdir / "state" / "ready").exists()


def test_long_running_retries_an_outage_before_its_first_write(
    app: App, agents: list[Agent]
) -> None:
    config = app.config()
    config["store"]["address"] = f"https://127.0.0.1:{free_port()}"
    agent = Agent(config, app.workdir / "agent.log")
    agents.append(agent)
    wait_for(lambda: sum(1 for x in agent.lines() if x["msg"] == "no files yet; will retry") >= 3)
    assert agent.proc.poll() is None, "an outage is retried, not a reason to exit"
    assert agent.stop() == 0
