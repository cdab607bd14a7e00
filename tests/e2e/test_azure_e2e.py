"""The azure store end to end: the real webhook over HTTPS, the kubelet player, the Entra
and Key Vault stand-in (tests/azureserver.py, which Microsoft's SDKs accept).

The admin config names an ``azure`` store (the stand-in, with its CA as caBundle); the
webhook injects the agent with a projected token for ``api://AzureADTokenExchange``;
the player runs the pod, the agent logs in as the store's client through workload
identity federation and writes Key Vault secrets for the app; a new version reaches
the file and fires the on-change POST; a rotated token file is exchanged again.
Each way an Azure admin can get it wrong fails the pod with a message saying what to
fix, and a revoked role leaves the running agent's last good files in place. No secret
value may show up in the webhook's log, the admitted pod, or the agent's and player's
logs (the harness's leak scan).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod, PodFailed
from hack.local_webhook import LocalWebhook
from hack.localstore import Issuer
from tests.azureserver import AUDIENCE, AzureServer, FederatedCredential
from tests.e2e.conftest import Harness, app_pod, read
from tests.polling import wait_for

pytestmark = pytest.mark.e2e
UID = 1000


@dataclass
class Azure:
    server: AzureServer
    client_id: str  # the store's clientId: Key Vault Secrets User on the vault
    webhook: LocalWebhook


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Azure]:
    """The stand-in, one app the store logs in as, and a webhook whose default store is it
    (plus one that asks the kubelet for the wrong audience)."""
    server = AzureServer(issuer)
    server.start()
    client_id = server.add_app()
    server.grant(client_id)
    store = {
        "kind": "azure", "vaultUrl": server.vault_url, "tenantId": server.tenant,
        "clientId": client_id, "authorityHost": server.authority_host,
        "caBundle": server.ca_pem,
    }  # fmt: skip
    stores = {"default": store, "wrong-audience": store | {"auth": {"audience": "openbao"}}}
    webhook = LocalWebhook(
        tmp_path_factory.mktemp("webhook-azure"),
        {"stores": stores, "agent": {"nativeSidecar": True}},
    )
    webhook.start()
    yield Azure(server, client_id, webhook)
    webhook.stop()
    server.stop()


@dataclass(kw_only=True)
class AzureFlow(Harness):
    """The harness on the stand-in; ``play`` admits the pod first."""

    azure: Azure
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:app"

    def federate(self, client_id: str | None = None) -> str:
        """Let the pods of this test's service account log in as ``client_id`` (a new
        app when None), as ``az identity federated-credential create`` does."""
        credential = FederatedCredential(self.issuer.issuer, self.subject)
        if client_id is None:
            return self.azure.server.add_app(None, credential)
        self.azure.server.federate(client_id, credential)
        return client_id

    def put(self, label: str, data: dict[str, str]) -> str:
        """A new version of this test's secret ``label``; its name, as annotations say it."""
        name = f"e2e-{self.tag}-{label}"
        self.azure.server.set_secret(name, json.dumps(data))
        return name

    def play(self, pod: dict[str, Any], **kw: Any) -> Pod:
        return super().play(self.admit(pod).pod, **kw)


@pytest.fixture
def flow(azure: Azure, issuer: Issuer, pod_root: Path) -> Iterator[AzureFlow]:
    harness = AzureFlow(azure=azure, issuer=issuer, webhook=azure.webhook, root=pod_root)
    yield harness
    harness.close()


@pytest.fixture
def reloads() -> Iterator[tuple[str, list[str]]]:
    """An app endpoint on loopback taking the on-change POSTs; the paths it was sent."""
    seen: list[str] = []

    class Reload(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            seen.append(self.path)
            self.send_response(204)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Reload)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}/-/reload", seen
    server.shutdown()
    server.server_close()


def _token_audiences(pod: dict[str, Any]) -> list[str]:
    return [
        source["serviceAccountToken"]["audience"]
        for volume in pod["spec"]["volumes"]
        for source in volume.get("projected", {}).get("sources", [])
        if "audience" in source.get("serviceAccountToken", {})
    ]


def test_key_vault_secrets_reach_the_app_and_follow_changes(
    flow: AzureFlow, reloads: tuple[str, list[str]]
) -> None:
    url, seen = reloads
    client_id = flow.federate(flow.azure.client_id)  # the store's own: no role annotation
    password = flow.value("pw")
    name = flow.put("db", {"username": "app", "password": password})
    pod = app_pod(
        {
            "latchkey.dev/secret-db.json": name,
            "latchkey.dev/secret-password": f"{name}#password",
            "latchkey.dev/refresh": "1s",
            "latchkey.dev/on-change": url,
        },
        command=["sh", "-c", "echo app started; exec sleep 60"],
        uid=UID,
    )
    played = flow.play(pod)
    assert _token_audiences(flow.admitted[-1].pod) == [AUDIENCE]
    played.wait_ready(30)
    assert json.loads(read(played, "db.json")) == {"username": "app", "password": password}
    assert read(played, "password") == password
    info = (played.volumes.dirs["latchkey-secrets"] / "password").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (UID, UID, 0o400)

    rotated = flow.value("pw2")
    flow.put("db", {"username": "app", "password": rotated})
    wait_for(lambda: read(played, "password") == rotated, timeout=15)
    wait_for(lambda: bool(seen), timeout=10)
    assert seen[0] == "/-/reload"

    before = flow.azure.server.issued(client_id)
    played.rotate_token()
    wait_for(lambda: flow.azure.server.issued(client_id) > before, timeout=15)
    assert "token file rotated" in played.logs("latchkey-agent")
    assert "app started" in played.logs("app")


FAILURES = [
    pytest.param("wrong-audience", 5,
                 ["no federated identity credential", "audience openbao", "subject {subject}",
                  "issuer {issuer}", "client {client}"], id="wrong-audience"),
    pytest.param("not-federated", 5,
                 ["no federated identity credential of client {client}", "tenant {tenant}",
                  "subject {subject}", "audience api://AzureADTokenExchange"],
                 id="subject-without-federated-credential"),
    pytest.param("no-role", 6,
                 ["client {client} may not get secret {secret}", "Key Vault Secrets User"],
                 id="no-role-assignment"),
    pytest.param("missing", 7, ["no secret {secret}", "SecretNotFound"], id="missing-secret"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "code", "words"), FAILURES)
def test_what_an_admin_can_get_wrong_fails_the_pod(
    flow: AzureFlow, case: str, code: int, words: list[str]
) -> None:
    secret = flow.put("guarded", {"password": flow.value("guarded")})
    if case == "not-federated":  # federated for another service account only
        other = FederatedCredential(flow.issuer.issuer, flow.subject.replace(":app", ":other"))
        client = flow.azure.server.add_app(None, other)
    else:
        client = flow.federate()
    if case != "no-role":
        flow.azure.server.grant(client)
    annotations = {
        "latchkey.dev/role": client,
        "latchkey.dev/secret-pw": secret if case != "missing" else f"{secret}-gone",
        "latchkey.dev/init-only": "true",
    }
    if case == "wrong-audience":
        annotations["latchkey.dev/store"] = "wrong-audience"
    played = flow.play(app_pod(annotations, command=["sh", "-c", "echo app ran; exec sleep 60"]))
    with pytest.raises(PodFailed) as failed:
        played.wait_ready(30)
    message = " ".join(str(failed.value).split())  # the log tail may wrap a long line
    assert message.startswith(f"init container latchkey-init exited with code {code}")
    names = {
        "client": client, "tenant": flow.azure.server.tenant, "subject": flow.subject,
        "issuer": flow.issuer.issuer, "secret": secret + ("-gone" if case == "missing" else ""),
    }  # fmt: skip
    for word in words:
        assert word.format(**names) in message
    assert played.state("app") == "waiting"


def test_a_revoked_role_keeps_the_last_good_files(flow: AzureFlow) -> None:
    client = flow.federate()
    flow.azure.server.grant(client)
    password = flow.value("kept")
    name = flow.put("kept", {"password": password})
    annotations = {
        "latchkey.dev/role": client,
        "latchkey.dev/secret-password": f"{name}#password",
        "latchkey.dev/refresh": "1s",
    }
    played = flow.play(app_pod(annotations, command=["sh", "-c", "exec sleep 60"]))
    played.wait_ready(30)
    assert read(played, "password") == password
    flow.azure.server.revoke(client)
    flow.put("kept", {"password": flow.value("never-seen")})
    wait_for(lambda: played.logs("latchkey-agent").count("keeping the last good files") >= 2)
    assert read(played, "password") == password
    assert f"client {client} may not get secret {name}" in played.logs("latchkey-agent")
    assert played.state("latchkey-agent") == "running"
