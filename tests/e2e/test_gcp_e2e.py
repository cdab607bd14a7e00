"""The gcp store end to end: the real webhook over HTTPS, the kubelet player, the stand-in.

The admin config names a ``gcp`` store (tests/gcpserver.py: STS, IAM Credentials and
Secret Manager on loopback, trusted through ``caBundle``); the webhook injects the
agent with a projected token for the provider's audience; the player runs the pod,
the agent exchanges the token, impersonates the store's service account and writes
the secret for the app; a new version reaches the file and fires the on-change POST;
a token rotation leads to a new exchange; each refusal fails the pod with a message
naming what to fix. No secret value may show up in any log or admitted pod.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod, PodFailed
from hack.local_webhook import LocalWebhook
from hack.localstore import Issuer
from tests.e2e.conftest import SECRETS, Harness, app_pod, read
from tests.gcpserver import GcpServer
from tests.polling import wait_for

SA = "e2e-reader@latchkey-test.iam.gserviceaccount.com"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gcp(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[GcpServer]:
    server = GcpServer(issuer)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory, gcp: GcpServer) -> Iterator[LocalWebhook]:
    """The default store impersonates SA; ``elsewhere`` gives tokens another audience."""
    stores = {
        "default": gcp.store(serviceAccount=SA),
        "elsewhere": gcp.store(serviceAccount=SA, auth={"audience": "https://example.com/x"}),
    }
    running = LocalWebhook(
        tmp_path_factory.mktemp("webhook-gcp"), {"stores": stores, "agent": {"nativeSidecar": True}}
    )
    running.start()
    yield running
    running.stop()


@dataclass(kw_only=True)
class GcpFlow(Harness):
    """The harness on the stand-in: this test's namespace may impersonate SA."""

    gcp: GcpServer

    def secret(self, label: str, *, bound: bool = True) -> tuple[str, str]:
        """A new secret holding a distinctive value (readable by SA when ``bound``)."""
        name, value = f"{label}-{self.tag}", self.value(label)
        self.gcp.add_version(name, value)
        if bound:
            self.gcp.bind_accessor(name, f"serviceAccount:{SA}")
        return name, value

    def play(self, pod: dict[str, Any], **kw: Any) -> Pod:
        return super().play(self.admit(pod).pod, **kw)


@pytest.fixture
def flow(
    gcp: GcpServer, webhook: LocalWebhook, issuer: Issuer, pod_root: Path
) -> Iterator[GcpFlow]:
    harness = GcpFlow(gcp=gcp, issuer=issuer, webhook=webhook, root=pod_root)
    gcp.allow_impersonation(SA, gcp.principal(harness.namespace, "app"))
    yield harness
    harness.close()


@pytest.fixture
def reloads() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP endpoint for ``on-change``: its port, and the paths POSTed to it."""
    posted: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server.server_address[1], posted
    server.shutdown()
    server.server_close()


def test_gcp_secret_reaches_the_app_and_a_new_version_follows(
    flow: GcpFlow, reloads: tuple[int, list[str]]
) -> None:
    port, posted = reloads
    name = f"db-{flow.tag}"
    password = flow.value("pw")
    flow.gcp.add_version(name, f'{{"username": "app", "password": "{password}"}}')
    flow.gcp.bind_accessor(name, f"serviceAccount:{SA}")
    token, token_value = flow.secret("token")
    pod = app_pod(
        {
            "latchkey.dev/store": "default",
            "latchkey.dev/secret-password": f"{name}@latest#password",
            "latchkey.dev/secret-token": token,
            "latchkey.dev/refresh": "1s",
            "latchkey.dev/on-change": f"http://localhost:{port}/reload",
        },
        command=["sh", "-c", "echo app started; exec sleep 60"],
    )
    played = flow.play(pod)
    played.wait_ready(30)
    volumes = {v["name"]: v for v in flow.admitted[-1].pod["spec"]["volumes"]}
    projected = volumes["latchkey-token"]["projected"]["sources"][0]["serviceAccountToken"]
    assert projected["audience"] == flow.gcp.audience  # the store's, set by the webhook
    assert read(played, "password") == password
    assert read(played, "token") == token_value
    modes = played.exec("app", ["stat", "-c", "%a %u", f"{SECRETS}/password", f"{SECRETS}/token"])
    assert modes.stdout.split("\n")[:2] == ["400 1000", "400 1000"]

    rotated = flow.value("pw2")
    flow.gcp.add_version(name, f'{{"username": "app", "password": "{rotated}"}}')
    wait_for(lambda: read(played, "password") == rotated, timeout=15)
    wait_for(lambda: "/reload" in posted, timeout=10)

    exchanges = flow.gcp.exchanges
    played.rotate_token()
    wait_for(lambda: flow.gcp.exchanges > exchanges, timeout=15)
    assert "token file rotated" in played.logs("latchkey-agent")
    assert "app started" in played.logs("app")


def test_revoked_access_keeps_the_last_good_files(flow: GcpFlow) -> None:
    name, value = flow.secret("kept")
    pod = app_pod(
        {"latchkey.dev/secret-kept": name, "latchkey.dev/refresh": "1s"},
        command=["sh", "-c", "exec sleep 60"],
    )
    played = flow.play(pod)
    played.wait_ready(30)
    assert read(played, "kept") == value
    flow.gcp.unbind_accessor(name, f"serviceAccount:{SA}")
    flow.gcp.add_version(name, "what a good read would bring")
    wait_for(lambda: "keeping the last good files" in played.logs("latchkey-agent"), timeout=15)
    assert "roles/secretmanager.secretAccessor" in played.logs("latchkey-agent")
    assert read(played, "kept") == value


def failed(flow: GcpFlow, annotations: dict[str, str], *, account: str = "app") -> str:
    """The PodFailed message of an init-only pod that cannot have its secret."""
    pod = app_pod(
        {"latchkey.dev/init-only": "true", **annotations},
        command=["sh", "-c", "echo app ran; exec sleep 60"],
    )
    pod["spec"]["serviceAccountName"] = account
    played = flow.play(pod)
    with pytest.raises(PodFailed) as failure:
        played.wait_ready(30)
    assert played.state("app") == "waiting"
    return str(failure.value)


def test_wrong_audience_fails_the_pod(flow: GcpFlow) -> None:
    name, _ = flow.secret("aud")
    message = failed(flow, {"latchkey.dev/store": "elsewhere", "latchkey.dev/secret-x": name})
    assert message.startswith("init container latchkey-init exited with code 5")
    subject = f"system:serviceaccount:{flow.namespace}:app"
    provider = f"//iam.googleapis.com/{flow.gcp.provider}"
    for word in ("invalid_grant", "audience https://example.com/x", provider, subject):
        assert word in message


def test_subject_without_a_binding_fails_the_pod(flow: GcpFlow) -> None:
    name, _ = flow.secret("stranger")
    message = failed(flow, {"latchkey.dev/secret-x": name}, account="stranger")
    assert message.startswith("init container latchkey-init exited with code 5")
    assert flow.gcp.principal(flow.namespace, "stranger") in message
    assert SA in message
    assert "roles/iam.workloadIdentityUser" in message


def test_secret_without_a_binding_fails_the_pod(flow: GcpFlow) -> None:
    name, _ = flow.secret("unbound", bound=False)
    message = failed(flow, {"latchkey.dev/secret-x": name})
    assert message.startswith("init container latchkey-init exited with code 6")
    assert f"projects/latchkey-test/secrets/{name}/versions/latest" in message
    assert SA in message
    assert "roles/secretmanager.secretAccessor" in message


def test_missing_secret_fails_the_pod(flow: GcpFlow) -> None:
    flow.gcp.bind_project_accessor(f"serviceAccount:{SA}")
    message = failed(flow, {"latchkey.dev/secret-x": f"missing-{flow.tag}@3"})
    assert message.startswith("init container latchkey-init exited with code 7")
    assert f"projects/latchkey-test/secrets/missing-{flow.tag}/versions/3" in message
