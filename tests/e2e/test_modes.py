"""The agent's shapes (native sidecar, classic init + sidecar, init-only) and rotation."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hack.kubelet import Pod
from tests.e2e.conftest import Flow, app_pod

REFRESH = 1
ROTATION_BUDGET = REFRESH + 5  # the refresh interval plus 5 s (issue 4)
DSN = "/latchkey/secrets/dsn"
BOTH = [pytest.param("native", id="native"), pytest.param("classic", id="classic")]

pytestmark = pytest.mark.e2e


def names(containers: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in containers]


def dsn_pod(flow: Flow, **annotations: str) -> dict[str, Any]:
    extra = {f"latchkey.dev/{key.replace('_', '-')}": value for key, value in annotations.items()}
    return app_pod(
        {
            "latchkey.dev/role": flow.grant(),
            "latchkey.dev/secret-dsn": flow.path("db"),
            "latchkey.dev/template-dsn": "postgres://app:${password}@db/app",
            **extra,
        },
        command=["sh", "-c", f"cat {DSN}; echo; exec sleep 60"],
    )


def wait_for_file(played: Pod, expected: str, *, budget: float) -> float:
    """Seconds until the app container sees ``expected`` in the DSN file."""
    started = time.monotonic()
    while time.monotonic() - started < budget:
        if played.exec("app", ["cat", DSN]).stdout == expected:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{DSN} did not change within {budget}s")


@pytest.mark.parametrize("flow", BOTH, indirect=True)
def test_rotation_reaches_the_app_within_the_refresh_interval(
    flow: Flow, request: pytest.FixtureRequest
) -> None:
    first, second = flow.value("first"), flow.value("second")
    flow.put("db", {"password": first})
    admitted = flow.admit(dsn_pod(flow, refresh=f"{REFRESH}s")).pod
    spec = admitted["spec"]
    if request.node.callspec.params["flow"] == "native":
        assert names(spec["initContainers"]) == ["latchkey-agent"]
        assert spec["initContainers"][0]["restartPolicy"] == "Always"
        assert names(spec["containers"]) == ["app"]
    else:
        assert names(spec["initContainers"]) == ["latchkey-init"]
        assert names(spec["containers"]) == ["app", "latchkey-agent"]
    played = flow.play(admitted)
    played.wait_ready(30)
    assert played.exec("app", ["cat", DSN]).stdout == f"postgres://app:{first}@db/app"
    flow.put("db", {"password": second})
    took = wait_for_file(played, f"postgres://app:{second}@db/app", budget=ROTATION_BUDGET)
    assert took <= ROTATION_BUDGET
    assert played.state("latchkey-agent") == "running"


def test_init_only_fetches_once_and_leaves_nothing_running(flow: Flow) -> None:
    secret = flow.value("once")
    flow.put("db", {"password": secret})
    admitted = flow.admit(dsn_pod(flow, init_only="true")).pod
    spec = admitted["spec"]
    assert names(spec["initContainers"]) == ["latchkey-init"]
    assert names(spec["containers"]) == ["app"]
    played = flow.play(admitted)
    played.wait_ready(30)
    assert played.state("latchkey-init") == "exited 0"
    assert "latchkey-agent" not in played.containers
    assert played.exec("app", ["cat", DSN]).stdout == f"postgres://app:{secret}@db/app"


def test_token_never_reaches_the_app(flow: Flow) -> None:
    flow.put("db", {"password": flow.value("pw")})
    played = flow.play(flow.admit(dsn_pod(flow)).pod)
    played.wait_ready(30)
    token_dir = "/var/run/secrets/latchkey.dev/serviceaccount"
    in_app = played.exec("app", ["ls", token_dir])
    in_agent = played.exec("latchkey-agent", ["ls", token_dir])
    assert in_app.returncode != 0
    assert in_agent.stdout.split() == ["token"]
