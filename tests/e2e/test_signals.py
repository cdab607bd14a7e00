"""``on-change: signal:...`` under the kubelet's identity rules: the app's gid need not be
the agent's. One SIGHUP per change, none without one, and the app reads the new file
when it gets it."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod
from tests.e2e.conftest import SECRETS, Flow, app_pod

REFRESH = 1
# On SIGHUP the app prints a digest of the file as it reads it then (never the value).
TRAP = (
    f'trap \'echo "hup $(sha256sum < {SECRETS}/pw | cut -d" " -f1)"\' HUP; '
    "echo started; while :; do sleep 0.1; done"
)
SLEEPER = ["sh", "-c", "while :; do sleep 1; done"]
# A uid the player's image (this machine's root) has no passwd entry for: with no
# runAsGroup its primary gid is 0, as for most images in a cluster.
UID = 4321


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _hups(played: Pod) -> list[str]:
    return [line.split()[1] for line in played.logs("app").splitlines() if line.startswith("hup")]


def _gid(played: Pod, name: str) -> int:
    process = played.containers[name].process
    assert process is not None
    status = Path(f"/proc/{process.pid}/status").read_text(encoding="utf-8").splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("Gid:")))


def _no_group(pod: dict[str, Any]) -> dict[str, Any]:
    """``runAsUser`` and no ``runAsGroup``, as most pods are written."""
    del pod["spec"]["securityContext"]["runAsGroup"]
    return pod


def _other_group(pod: dict[str, Any]) -> dict[str, Any]:
    """The agent takes the first selected container's group (3000); the app has 4000."""
    pod = _no_group(pod)
    (app,) = pod["spec"]["containers"]
    app["securityContext"] = {"runAsGroup": 4000}
    web = {"name": "web", "image": "busybox", "command": SLEEPER}
    pod["spec"]["containers"] = [{**web, "securityContext": {"runAsGroup": 3000}}, app]
    return pod


@pytest.mark.e2e
@pytest.mark.parametrize(
    "shape",
    [pytest.param(_no_group, id="no-run-as-group"), pytest.param(_other_group, id="other-group")],
)
def test_one_sighup_per_change_whatever_the_apps_gid(flow: Flow, shape: Any) -> None:
    first, second = flow.value("first"), flow.value("second")
    flow.put("db", {"password": first})
    annotations = {
        "latchkey.dev/role": flow.grant(),
        "latchkey.dev/secret-pw": f"{flow.path('db')}#password",
        "latchkey.dev/refresh": f"{REFRESH}s",
        "latchkey.dev/on-change": "signal:SIGHUP:app",
    }
    admitted = flow.admit(shape(app_pod(annotations, command=["sh", "-c", TRAP], uid=UID))).pod
    played = flow.play(admitted)
    played.wait_ready(30)
    assert _gid(played, "app") != _gid(played, "latchkey-agent"), "the case under test"
    quiet_until = time.monotonic() + 3 * REFRESH + 1
    while time.monotonic() < quiet_until:
        assert _hups(played) == [], "a SIGHUP came while nothing changed"
        time.sleep(0.1)
    flow.put("db", {"password": second})
    changed = time.monotonic()
    while not _hups(played):
        assert time.monotonic() - changed < REFRESH + 5, "no SIGHUP within refresh + 5 s"
        time.sleep(0.05)
    time.sleep(3 * REFRESH + 1)  # further refreshes find nothing new
    assert _hups(played) == [_digest(second)], "exactly one SIGHUP, seeing the new file"
