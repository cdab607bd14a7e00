"""A crash mid-write leaves no secret copy behind: the real agent, killed with SIGKILL
while it rewrites files, then started again. No temp file survives the restart and
every file is whole (one complete version, never a mix or a truncation)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.polling import wait_for
from tests.sidecar.agent_helpers import App, agent_argv, agent_env, run_agent, temps

# Big enough that a write takes a while, so SIGKILL often lands inside one.
PADDING = "x" * 200_000


def _whole(app: App, versions: set[str]) -> None:
    doc = json.loads(app.file("db.json").read_text())
    assert doc["password"] in versions
    assert app.file("password").read_text() in versions


def test_a_temp_file_left_by_a_killed_run_is_removed_at_start(app: App) -> None:
    secrets = app.workdir / "secrets"
    secrets.mkdir(parents=True)
    stale = secrets / ".db.json.tmp-0badc0de"
    stale.write_text('{"password": "half-writ')
    unrelated = secrets / ".not-ours.tmp"
    unrelated.write_text("kept")
    done = run_agent("--once", config=app.config())
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert unrelated.exists(), "only the agent's own temp names are removed"
    assert "stale temp files removed" in done.stderr
    app.assert_no_value(done.stdout, done.stderr)


def test_sigkill_during_writes_then_restart_leaves_whole_files(app: App) -> None:
    versions = set()
    config = app.config(refreshSeconds=1)
    for round_ in range(6):
        password = f"pw-{round_}-{PADDING}"
        versions.add(password)
        app.put_db("user", password)
        agent = subprocess.Popen(
            agent_argv(), env=agent_env(config),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda: app.file("db.json").exists(), timeout=30)
            time.sleep(0.05 * round_)  # land at different points of the write
        finally:
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
    done = run_agent("--once", config=config)
    assert done.returncode == 0, done.stderr
    secrets, state = app.workdir / "secrets", app.workdir / "state"
    assert temps(secrets, state) == []
    _whole(app, versions)
    assert Path(app.file("password")).read_text() == app.values["password"]
