"""The end-to-end harness: real OpenBao, the real webhook over HTTPS, the kubelet player.

Every test gets its own namespace, role and store paths, makes random,
distinctive secret values with :meth:`Flow.value`, and on teardown every log
the test produced outside the app itself (the webhook's, each injected agent
container's, the player's) and every admitted pod spec are scanned for those
values: a leak fails the test that caused it.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod, issuer_minter
from hack.local_webhook import Admission, LocalWebhook, vault_store
from hack.localstore import Issuer, OpenBao
from sidecar.config import DEFAULT_MOUNT_PATH

AUDIENCE = "openbao"
SECRETS = str(DEFAULT_MOUNT_PATH)  # where the app container sees its secret files
INJECTED = ("latchkey-init", "latchkey-agent")


def webhook_config(openbao: OpenBao, *, native: bool = True) -> dict[str, Any]:
    """The admin config: one store, and the agent's mode (native sidecar or classic)."""
    return {
        "stores": {"default": vault_store(openbao, audience=AUDIENCE)},
        "agent": {"nativeSidecar": native},
    }


def start_webhook(workdir: Path, openbao: OpenBao, *, native: bool = True) -> LocalWebhook:
    webhook = LocalWebhook(workdir, webhook_config(openbao, native=native))
    webhook.start()
    return webhook


@pytest.fixture(scope="session")
def webhooks(
    tmp_path_factory: pytest.TempPathFactory, openbao: OpenBao
) -> Iterator[dict[str, LocalWebhook]]:
    """Two webhooks on the session store: native sidecar agents, and classic ones."""
    running = {
        "native": start_webhook(tmp_path_factory.mktemp("webhook-native"), openbao),
        "classic": start_webhook(tmp_path_factory.mktemp("webhook-classic"), openbao, native=False),
    }
    yield running
    for webhook in running.values():
        webhook.stop()


def app_pod(
    annotations: dict[str, str], *, command: list[str], image: str = "busybox", uid: int = 1000
) -> dict[str, Any]:
    """A pod as a user writes it: opted in, service account ``app``, one container."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "app-",
            "annotations": {"latchkey.dev/inject": "true", **annotations},
        },
        "spec": {
            "serviceAccountName": "app",
            "securityContext": {"runAsUser": uid, "runAsGroup": uid},
            "containers": [{"name": "app", "image": image, "command": command}],
        },
    }


@dataclass(kw_only=True)
class Harness:
    """One test's distinctive values and the pods it admitted and played, whatever the
    store; at the end every captured output is scanned for every value."""

    issuer: Issuer
    webhook: LocalWebhook
    root: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    values: list[str] = field(default_factory=list)
    admitted: list[Admission] = field(default_factory=list)
    played: list[Pod] = field(default_factory=list)

    @property
    def namespace(self) -> str:
        return f"e2e-{self.tag}"

    def value(self, label: str) -> str:
        """A distinctive random secret value; the leak scan looks for it everywhere."""
        value = f"{label}-{secrets.token_hex(10)}"
        self.values.append(value)
        return value

    def admit(self, pod: dict[str, Any]) -> Admission:
        admission = self.webhook.admit(pod, namespace=self.namespace)
        assert admission.allowed, admission.message
        self.admitted.append(admission)
        return admission

    def play(self, pod: dict[str, Any], **kw: Any) -> Pod:
        """Start ``pod`` (already admitted) with the player; stopped at teardown."""
        root = self.root / f"pod-{len(self.played)}"
        played = Pod(
            pod, root=root, minter=issuer_minter(self.issuer), namespace=self.namespace, **kw
        )
        self.played.append(played)
        played.start()
        return played

    def captured(self) -> dict[str, str]:
        """Every log and pod spec that must never hold a secret value."""
        texts = {"webhook": self.webhook.log_file.read_text(encoding="utf-8")}
        for index, admission in enumerate(self.admitted):
            texts[f"admitted pod {index}"] = json.dumps(admission.pod)
        for played in self.played:
            agent_logs = {f"{played.name}/{name}": played.logs(name) for name in INJECTED}
            assert any(agent_logs.values()), f"{played.name}: no agent output to scan"
            texts |= agent_logs | {f"{played.name}/kubelet": played.logs("kubelet")}
        return texts

    def close(self) -> None:
        for played in self.played:
            played.stop(grace=3)
        leaks = [
            name for name, text in self.captured().items() if any(v in text for v in self.values)
        ]
        assert not leaks, f"secret values found in: {leaks}"


@dataclass(kw_only=True)
class Flow(Harness):
    """The harness with one test's slice of the OpenBao store."""

    openbao: OpenBao

    def path(self, name: str) -> str:
        """This test's KV v2 path for ``name``, as an annotation names it."""
        return f"secret/data/e2e/{self.tag}/{name}"

    def put(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Write a secret at this test's ``name``; returns ``data``."""
        self.openbao.put_kv2(f"e2e/{self.tag}/{name}", data)
        return data

    def grant(self, role: str = "app", *, service_account: str = "app") -> str:
        """A role that may read this test's paths, bound to the service account here."""
        name = f"{role}-{self.tag}"
        self.openbao.write_policy(
            name, f'path "secret/data/e2e/{self.tag}/*" {{ capabilities = ["read"] }}'
        )
        self.openbao.add_jwt_role(
            name, namespace=self.namespace, service_account=service_account,
            audience=AUDIENCE, policies=[name], token_ttl="5m",
        )  # fmt: skip
        return name


def read(played: Pod, name: str) -> str:
    """A secret file as the app container sees it (through its read-only mount)."""
    result = played.exec("app", ["cat", f"{SECRETS}/{name}"])
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def pod_root() -> Iterator[Path]:
    """Pod dirs other uids can traverse (tmp_path is 0700), as a node's are."""
    path = Path(tempfile.mkdtemp(prefix="latchkey-e2e-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["native"])
def flow(
    request: pytest.FixtureRequest,
    openbao: OpenBao,
    issuer: Issuer,
    webhooks: dict[str, LocalWebhook],
    pod_root: Path,
) -> Iterator[Flow]:
    """The harness on the session store; parametrize ``flow`` indirectly for classic mode."""
    harness = Flow(openbao=openbao, issuer=issuer, webhook=webhooks[request.param], root=pod_root)
    yield harness
    harness.close()
