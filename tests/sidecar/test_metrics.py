"""``--metrics-port``: a real scrape of the real agent, on loopback only, and
``prometheus_client`` never imported without the flag."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hack.localstore import free_port
from tests.polling import wait_for
from tests.sidecar.agent_helpers import App, agent_argv, agent_env, error_line, run_agent
from tests.sidecar.database import Postgres, grant_database

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp has them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                found.add(address)
    return found


@pytest.fixture
def leased_app(app: App, postgres: Postgres) -> tuple[App, str]:
    """The app, allowed to read database creds too; and their path."""
    path = grant_database(app, postgres, ttl="1h", max_ttl="2h")
    return app, path


@pytest.fixture
def agent(leased_app: tuple[App, str]) -> Iterator[tuple[subprocess.Popen[str], int]]:
    (app, path), port = leased_app, free_port()
    files = [*app.config()["files"], {"name": "pg", "path": path}]
    config = app.config(files=files)
    proc = subprocess.Popen(
        agent_argv("--metrics-port", str(port)),
        env=agent_env(config),
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc, port
    proc.kill()
    proc.wait(10)


def test_a_real_scrape(
    leased_app: tuple[App, str], agent: tuple[subprocess.Popen[str], int]
) -> None:
    (app, _), (proc, port) = leased_app, agent
    wait_for(lambda: (app.workdir / "state" / "ready").exists())
    samples = scrape(port)
    assert samples[("latchkey_agent_renders_total", ())] >= 1
    assert abs(samples[("latchkey_agent_last_success_timestamp_seconds", ())] - time.time()) < 30
    expiry = samples[("latchkey_agent_earliest_lease_expiry_timestamp_seconds", ())]
    assert 3500 < expiry - time.time() <= 3600, "the database lease: one hour"
    assert not [k for k in samples if k[0] == "latchkey_agent_failures_total"]
    assert listening_addresses(port) == {"0100007F"}, "127.0.0.1 only"

    app.store.api("DELETE", f"secret/metadata/{app.name}/db")
    failed = ("latchkey_agent_failures_total", (("error", "SecretNotFound"),))
    wait_for(lambda: scrape(port).get(failed, 0) >= 2)
    renders = scrape(port)[("latchkey_agent_renders_total", ())]
    app.put_db("user-back", "pw-back")
    wait_for(lambda: scrape(port)[("latchkey_agent_renders_total", ())] > renders)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    app.assert_no_value(err)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(["--once", "--metrics-port", "9102"], "only without --once", id="with-once"),
        pytest.param(["--metrics-port", "70000"], "a port 1-65535", id="out-of-range"),
        pytest.param(["--metrics-port", "nine"], "invalid int value", id="not-a-number"),
    ],
)
def test_bad_metrics_port(app: App, args: list[str], needle: str) -> None:
    done = run_agent(*args, config=app.config())
    assert done.returncode == 2, done.stderr
    assert needle in error_line(done.stderr)["msg"]


def test_port_in_use_is_one_clear_line(app: App) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_agent("--metrics-port", str(port), config=app.config(), timeout=30)
    assert done.returncode == 2, done.stderr
    line = error_line(done.stderr)
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1" in line["msg"]


def test_prometheus_client_is_imported_only_with_the_flag(app: App) -> None:
    code = (
        "import sys; from sidecar.__main__ import main; code = main(['--once']); "
        "print(code, 'prometheus_client' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=agent_env(app.config()),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.split() == ["0", "False"], done.stderr
