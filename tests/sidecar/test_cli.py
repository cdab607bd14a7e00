"""The real ``latchkey-sidecar`` as a subprocess against a real OpenBao: every way in,
every way out (exit code and the one line naming what failed), the probes, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.localstore import free_port
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


def assert_written(app: App) -> None:
    assert json.loads(app.file("db.json").read_text()) == {
        "username": app.values["username"],
        "password": app.values["password"],
    }
    assert app.file("password").read_text() == app.values["password"]
    assert app.file("api.env").read_text() == f"api_key={app.values['api_key']}\n"
    assert oct(app.file("password").stat().st_mode & 0o777) == oct(0o440)
    assert oct(app.file("db.json").stat().st_mode & 0o777) == oct(0o400)
    env = (app.workdir / "state" / "env").read_bytes()
    assert env == f"API_KEY={app.values['api_key']}".encode() + b"\0"
    assert (app.workdir / "state" / "ready").exists()


def test_once_from_env_config(app: App) -> None:
    done = run_agent("--once", config=app.config())
    assert done.returncode == 0, done.stderr
    assert_written(app)
    app.assert_no_value(done.stdout, done.stderr)


@pytest.mark.parametrize("kind", [pytest.param("json", id="json"), pytest.param("yaml", id="yaml")])
def test_once_from_config_file(app: App, kind: str) -> None:
    config = app.config()
    path = app.workdir / f"agent.{kind}"
    path.write_text(json.dumps(config) if kind == "json" else yaml.safe_dump(config))
    done = run_agent("--once", "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert_written(app)


def test_once_from_flags_alone(app: App) -> None:
    flags = [
        "--address", app.store.address, "--ca-file", str(app.store.ca_file),
        "--role", app.role, "--token-path", str(app.token_path), "--audience", "openbao",
        "--secrets-dir", str(app.workdir / "secrets"), "--state-dir", str(app.workdir / "state"),
        "--secret", f"db.json={app.db_path}",
        "--secret", f"password={app.db_path}#password", "--file-mode", "password=0440",
        "--secret", f"api.env={app.kv1_path}", "--format", "api.env=env",
        "--secret", f"dsn={app.db_path}", "--template", "dsn=pg://${username}:${password}@db",
        "--env", f"API_KEY={app.kv1_path}#api_key",
    ]  # fmt: skip
    done = run_agent("--once", *flags)
    assert done.returncode == 0, done.stderr
    assert_written(app)
    expected = f"pg://{app.values['username']}:{app.values['password']}@db"
    assert app.file("dsn").read_text() == expected
    app.assert_no_value(done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("change", "code", "kind", "needles"),
    [pytest.param(*case, id=name) for name, case in FAILURES.items()],
)
def test_once_failures(app: App, change: str, code: int, kind: str, needles: list[str]) -> None:
    done = run_agent("--once", config=wrong_config(app, change))
    assert done.returncode == code, done.stderr
    line = error_line(done.stderr)
    assert line["error"] == kind
    assert line["exit"] == code
    for needle in needles:
        assert needle in line["msg"]
    if code in (5, 6, 7):
        assert app.store.address in line["msg"]
    assert len(done.stderr.strip().splitlines()) == 1, "one clear line, nothing else"
    app.assert_no_value(done.stdout, done.stderr)
    assert not (app.workdir / "state" / "ready").exists()


def test_store_down_at_start_fails_within_the_deadline(app: App) -> None:
    config = app.config()
    address = f"https://127.0.0.1:{free_port()}"
    config["store"]["address"] = address
    started = time.monotonic()
    done = run_agent("--once", "--deadline", "2", config=config)
    elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stderr
    line = error_line(done.stderr)
    assert line["error"] == "StoreUnavailable"
    assert address in line["msg"]
    assert "gave up after" in line["msg"]
    assert elapsed < 2 + 1.5  # the deadline, plus the interpreter's start and exit
    retries = [json.loads(x) for x in done.stderr.splitlines() if '"retrying"' in x]
    assert retries, "retryable errors are retried before giving up"
    assert all(r["backoff"] >= 0 and r["attempt"] >= 1 for r in retries)


def probe(kind: str, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent_argv("probe", kind),
        env=agent_env(config),
        capture_output=True,
        text=True,
        check=False,
    )


def test_long_running_probes_and_sigterm_revokes_the_token(app: App) -> None:
    config = app.config()
    assert probe("startup", config).returncode == 1
    assert probe("liveness", config).returncode == 1
    proc = subprocess.Popen(
        agent_argv(),
        env=agent_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: probe("startup", config).returncode == 0, timeout=15)
        assert_written(app)
        assert probe("liveness", config).returncode == 0
        assert len(app.token_accessors()) == 1
        app.put_db("user-rotated", f"pw-{os.urandom(8).hex()}")
        wait_for(lambda: app.values["password"] in app.file("password").read_text(), timeout=15)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert app.token_accessors() == [], "SIGTERM revokes the store token"
    assert '"store token revoked"' in err
    app.assert_no_value(out, err)


def test_once_keeps_its_token(app: App) -> None:
    """Dynamic secrets leased under an init container's token must outlive it."""
    assert run_agent("--once", config=app.config()).returncode == 0
    assert len(app.token_accessors()) == 1


def test_liveness_fails_when_alive_is_stale(app: App) -> None:
    config = app.config()
    state = app.workdir / "state"
    state.mkdir()
    (state / "alive").touch()
    assert probe("liveness", config).returncode == 0
    old = time.time() - 120
    os.utime(state / "alive", (old, old))
    stale = probe("liveness", config)
    assert stale.returncode == 1
    assert "old" in stale.stdout


@pytest.mark.parametrize(
    "argv", [pytest.param(["probe"], id="no-kind"), pytest.param(["probe", "ready"], id="bad-kind")]
)
def test_probe_usage(argv: list[str]) -> None:
    done = subprocess.run(agent_argv(*argv), capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "probe startup|liveness" in done.stderr


def test_probe_imports_neither_pydantic_nor_httpx(tmp_path: Path) -> None:
    code = (
        "import sys; from sidecar.__main__ import main; main(['probe', 'startup'], {}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'httpx')))"
    )
    done = subprocess.run(
        [*agent_argv()[:1], "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().endswith("[]")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--version"], "latchkey-sidecar 0.1.0", id="version"),
        pytest.param(["--help"], "latchkey-sidecar probe startup|liveness", id="help-lists-probe"),
    ],
)
def test_help_and_version(argv: list[str], expected: str) -> None:
    done = run_agent(*argv)
    assert done.returncode == 0, done.stderr
    assert expected in " ".join(done.stdout.split())


def test_store_setup_help_is_whole_sentences() -> None:
    script = Path(__file__).parents[2] / "hack" / "store-setup.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    )
    description = " ".join(done.stdout.split("positional arguments")[0].split()[3:])
    assert description.endswith("never a flag."), description
