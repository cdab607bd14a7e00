"""When things go wrong: a role the store refuses, and the store going down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.kubelet import PodFailed
from hack.local_webhook import LocalWebhook
from hack.localstore import Issuer, OpenBao
from tests.e2e.conftest import Flow, app_pod, start_webhook

DB = "/latchkey/secrets/db.json"

pytestmark = pytest.mark.e2e


def wrong_role_pod(flow: Flow, role: str) -> dict[str, object]:
    return app_pod(
        {"latchkey.dev/role": role, "latchkey.dev/secret-db.json": flow.path("db")},
        command=["sh", "-c", "echo app ran; exec sleep 60"],
    )


@pytest.mark.parametrize(
    ("flow", "init_only"),
    [
        pytest.param("classic", "false", id="classic"),
        pytest.param("native", "true", id="init-only"),
    ],
    indirect=["flow"],
)
def test_wrong_role_fails_the_init_and_the_app_never_starts(flow: Flow, init_only: str) -> None:
    flow.put("db", {"password": flow.value("pw")})
    flow.grant(service_account="someone-else")
    role = f"app-{flow.tag}"  # bound to another service account than the pod's
    pod = wrong_role_pod(flow, role)
    pod["metadata"]["annotations"]["latchkey.dev/init-only"] = init_only  # type: ignore[index]
    played = flow.play(flow.admit(pod).pod)
    with pytest.raises(PodFailed) as failed:
        played.wait_ready(30)
    message = str(failed.value)
    assert message.startswith("init container latchkey-init exited with code 5")
    assert role in message
    assert played.state("app") == "waiting"
    assert played.logs("app") == ""


def test_native_agent_with_a_wrong_role_holds_the_app_back(flow: Flow) -> None:
    flow.put("db", {"password": flow.value("pw")})
    played = flow.play(flow.admit(wrong_role_pod(flow, f"nobody-{flow.tag}")).pod)
    # Before its first write the agent fails fast with one line (CrashLoopBackOff and
    # a termination message in a cluster) rather than retrying a denial forever.
    with pytest.raises(PodFailed) as failed:
        played.wait_ready(30)
    assert str(failed.value).startswith("sidecar latchkey-agent exited with code 5")
    assert f"nobody-{flow.tag}" in str(failed.value)
    assert played.state("app") == "waiting"
    assert f"nobody-{flow.tag}" in played.logs("latchkey-agent")


@pytest.fixture
def own_store(tmp_path: Path, issuer: Issuer) -> Iterator[OpenBao]:
    """An OpenBao this test may stop: the session one is shared."""
    server = OpenBao(tmp_path / "openbao")
    server.start()
    server.enable_jwt(issuer)
    yield server
    server.stop()


@pytest.fixture
def own_flow(tmp_path: Path, own_store: OpenBao, issuer: Issuer, pod_root: Path) -> Iterator[Flow]:
    webhook: LocalWebhook = start_webhook(tmp_path / "webhook", own_store)
    harness = Flow(openbao=own_store, issuer=issuer, webhook=webhook, root=pod_root)
    yield harness
    harness.close()
    webhook.stop()


def test_store_down_keeps_the_files_and_the_agent_recovers(own_flow: Flow) -> None:
    flow, store = own_flow, own_flow.openbao
    before, after = flow.value("before"), flow.value("after")
    flow.put("db", {"password": before})
    pod = app_pod(
        {"latchkey.dev/role": flow.grant(), "latchkey.dev/secret-db.json": flow.path("db"),
         "latchkey.dev/refresh": "1s"},
        command=["sh", "-c", "exec sleep 60"],
    )  # fmt: skip
    played = flow.play(flow.admit(pod).pod)
    played.wait_ready(30)
    content = played.exec("app", ["cat", DB]).stdout
    store.stop()
    deadline = time.monotonic() + 15
    while "retry" not in played.logs("latchkey-agent"):
        assert time.monotonic() < deadline, "the agent never noticed the store was down"
        time.sleep(0.2)
    assert played.exec("app", ["cat", DB]).stdout == content
    assert played.state("latchkey-agent") == "running"
    assert played.exec("latchkey-agent", ["latchkey-sidecar", "probe", "liveness"]).returncode == 0

    store.start()  # a dev server forgets everything: seed it again, as after a real outage
    store.enable_jwt(flow.issuer)
    flow.grant()
    flow.put("db", {"password": after})
    deadline = time.monotonic() + 30
    while after not in played.exec("app", ["cat", DB]).stdout:
        assert time.monotonic() < deadline, "the agent did not recover after the store came back"
        time.sleep(0.2)
