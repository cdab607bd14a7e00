"""SECURITY.md, "A shell in an app container": a signal on-change shares the pod's PID
namespace and runs the agent as the app's uid, yet that uid cannot look into the agent
through ``/proc/<pid>`` (environ, root/), because the agent makes itself non-dumpable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import Issuer, OpenBao
from sidecar.config import SIGNAL_MARK_DIR
from tests.e2e.conftest import Flow, app_pod
from tests.sidecar.agent_helpers import App, agent_env

UID = 1000
AS_APP: dict[str, Any] = {"user": UID, "group": UID, "extra_groups": []}
AGENT = Path(sys.executable).parent / "latchkey-sidecar"
TOKEN = "/var/run/secrets/latchkey.dev/serviceaccount/token"

# What a shell of the app's uid would try: the process's env, its filesystem, a file in it.
PEEK = """
import json, os, sys
pid, path = sys.argv[1], sys.argv[2]
def attempt(look):
    try:
        look()
        return "read"
    except OSError as exc:
        return type(exc).__name__
print(json.dumps({
    "environ": attempt(lambda: open(f"/proc/{pid}/environ", "rb").read()),
    "root": attempt(lambda: os.listdir(f"/proc/{pid}/root/")),
    "file": attempt(lambda: open(f"/proc/{pid}/root{path}", "rb").read()),
}))
"""
DENIED = {"environ": "PermissionError", "root": "PermissionError", "file": "PermissionError"}


def peek(pid: int, path: Path) -> dict[str, str]:
    """PEEK run as the app's uid against ``pid``."""
    done = subprocess.run(
        [sys.executable, "-c", PEEK, str(pid), str(path)],
        capture_output=True, text=True, check=True, timeout=30, **AS_APP,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"exited {process.returncode}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout}s"
        time.sleep(0.05)


@pytest.fixture
def app(openbao: OpenBao, issuer: Issuer, pod_root: Path) -> App:
    """A seeded app whose workdir belongs to the app's uid, as the agent's volumes do."""
    workdir = pod_root / "agent"
    workdir.mkdir()
    seeded = App(openbao, issuer, workdir).seed()
    for path in (workdir, seeded.token_path):
        os.chown(path, UID, UID)
    return seeded


@pytest.fixture
def running(app: App) -> Iterator[subprocess.Popen[bytes]]:
    """The real ``latchkey-sidecar``, long-running as the app's uid, once it wrote the files."""
    with subprocess.Popen(
        [str(AGENT)], env=agent_env(app.config()), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **AS_APP,
    ) as agent:  # fmt: skip
        try:
            wait_for(app.workdir / "state" / "ready", agent)
            yield agent
        finally:
            agent.terminate()
            agent.wait(10)


def test_the_apps_uid_cannot_read_the_agents_environ_or_root(
    app: App, running: subprocess.Popen[bytes]
) -> None:
    assert peek(running.pid, app.token_path) == DENIED
    with subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], **AS_APP
    ) as plain:  # the same uid, without the prctl: the door the agent closes is real
        try:
            assert peek(plain.pid, app.token_path) == dict.fromkeys(DENIED, "read")
        finally:
            plain.kill()


GET_DUMPABLE = """
import ctypes, sys
from sidecar.__main__ import main
prctl = ctypes.CDLL(None).prctl
before = prctl(3, 0, 0, 0, 0)
code = main(sys.argv[1:], {})
print(before, code, prctl(3, 0, 0, 0, 0))
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param(["probe", "startup"], 1, id="probe-startup"),
        pytest.param(["probe", "liveness"], 1, id="probe-liveness"),
        pytest.param(["probe", "ready"], 2, id="probe-usage"),
        pytest.param(["--once"], 2, id="once-without-config"),
    ],
)
def test_every_way_in_makes_the_agent_undumpable_first(argv: list[str], code: int) -> None:
    """PR_GET_DUMPABLE after ``main`` returns, even on the paths that fail at once."""
    done = subprocess.run(
        [sys.executable, "-c", GET_DUMPABLE, *argv],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert done.stdout.splitlines()[-1].split() == ["1", str(code), "0"], done.stderr


def doors(pid: int) -> list[list[str]]:
    """What a shell in the app would run to look into process ``pid``."""
    root = f"/proc/{pid}/root"
    return [["cat", f"/proc/{pid}/environ"], ["cat", f"{root}{TOKEN}"], ["ls", f"{root}/"]]


@pytest.mark.e2e
def test_a_shell_in_the_app_cannot_reach_the_agent_yet_signals_still_arrive(flow: Flow) -> None:
    """A pod with a signal on-change, as the kubelet player runs it: shared PIDs, one uid."""
    flow.put("db", {"password": flow.value("first")})
    pod = app_pod(
        {
            "latchkey.dev/role": flow.grant(),
            "latchkey.dev/secret-pw": flow.path("db"),
            "latchkey.dev/refresh": "1s",
            "latchkey.dev/on-change": "signal:HUP:app",
        },
        command=["sh", "-c", "trap 'echo got-hup' HUP; while :; do sleep 0.1; done"],
    )
    admitted = flow.admit(pod).pod
    assert admitted["spec"]["shareProcessNamespace"] is True
    played = flow.play(admitted)
    played.wait_ready(30)
    agent, app = (played.containers[name].process for name in ("latchkey-agent", "app"))
    assert agent is not None
    assert app is not None
    for door in doors(agent.pid):
        assert "Permission denied" in played.exec("app", door).stderr, door
    # The agent finds the process to signal by the mark mounted in its container.
    app_mounts = played.exec("app", ["cat", f"/proc/{app.pid}/mountinfo"]).stdout
    assert f"/{SIGNAL_MARK_DIR.parent.name}/{SIGNAL_MARK_DIR.name}/app " in app_mounts
    flow.put("db", {"password": flow.value("second")})
    deadline = time.monotonic() + 10
    while "got-hup" not in played.logs("app"):
        assert time.monotonic() < deadline, "the agent's signal never reached the app"
        time.sleep(0.1)
