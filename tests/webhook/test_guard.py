"""latchkey-guard: updates of injected pods, as the API server sends them to /validate.

Each review carries the whole running Pod twice, as ``object`` and ``oldObject``; an
``ephemeralcontainers`` review differs only in the added debug container. The pods
are the golden injected pods, with the status a running pod has.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from webhook.app import create_app
from webhook.guard import check_update
from webhook.settings import GuardSettings, load_config

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONFIG = load_config(FIXTURES / "config.yaml")
ALLOW_SECRETS = CONFIG.model_copy(update={"guard": GuardSettings(debug_may_mount_secrets=True)})


def running(golden: str) -> dict[str, Any]:
    """A golden injected pod as it is once running: named, scheduled, with a status."""
    pod: dict[str, Any] = json.loads((FIXTURES / "golden" / f"{golden}.json").read_text())
    pod["metadata"] |= {
        "name": "web-7d4b9c6f5-x2x7q",
        "namespace": "shop",
        "uid": str(uuid.uuid4()),
    }
    pod["spec"]["nodeName"] = "node-1"
    pod["status"] = {"phase": "Running", "podIP": "10.0.0.12"}
    return pod


def debug_container(**extra: Any) -> dict[str, Any]:
    """What ``kubectl debug -it --image=busybox --target=...`` adds, plus ``extra``."""
    return {
        "name": "debugger-" + uuid.uuid4().hex[:5],
        "image": "busybox:1.36",
        "stdin": True,
        "tty": True,
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        **extra,
    }


def review(pod: dict[str, Any], old: dict[str, Any], sub_resource: str) -> dict[str, Any]:
    group = {"group": "", "version": "v1"}
    request = {
        "uid": str(uuid.uuid4()),
        "kind": {**group, "kind": "Pod"},
        "resource": {**group, "resource": "pods"},
        "requestKind": {**group, "kind": "Pod"},
        "requestResource": {**group, "resource": "pods"},
        "name": pod["metadata"]["name"],
        "namespace": pod["metadata"]["namespace"],
        "operation": "UPDATE",
        "userInfo": {"username": "alice@example.com", "groups": ["developers"]},
        "object": pod,
        "oldObject": old,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"},
    }
    if sub_resource:
        request |= {"subResource": sub_resource, "requestSubResource": sub_resource}
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def debugged(golden: str, container: dict[str, Any]) -> dict[str, Any]:
    old = running(golden)
    pod = copy.deepcopy(old)
    pod["spec"]["ephemeralContainers"] = [container]
    return review(pod, old, "ephemeralcontainers")


def reimaged(golden: str, name: str, image: str) -> dict[str, Any]:
    old = running(golden)
    pod = copy.deepcopy(old)
    for container in [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]:
        if container["name"] == name:
            container["image"] = image
    return review(pod, old, "")


def mount(volume: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    return {"name": volume, "mountPath": path, **({"readOnly": True} if read_only else {})}


TOKEN_MOUNT = mount("latchkey-token", "/t", read_only=True)
STATE_MOUNT = mount("latchkey-state", "/s")
SECRETS_RO = mount("latchkey-secrets", "/x", read_only=True)
BIN_RO = mount("latchkey-bin", "/b", read_only=True)
AGENT = "latchkey-agent"
PTRACE = {"capabilities": {"add": ["SYS_PTRACE"]}}

# (review, settings, allowed, fragments the denial must hold)
CASES = [
    pytest.param(debugged("deployment-native", debug_container(volumeMounts=[TOKEN_MOUNT])),
                 CONFIG, False, ["volume latchkey-token", "store-audience token", "debugger-"],
                 id="debug-mounts-token"),
    pytest.param(debugged("deployment-native", debug_container(volumeMounts=[STATE_MOUNT])),
                 ALLOW_SECRETS, False, ["volume latchkey-state", "saved store token"],
                 id="debug-mounts-state-even-with-the-switch"),
    pytest.param(debugged("deployment-native", debug_container(volumeMounts=[SECRETS_RO])),
                 CONFIG, False, ["volume latchkey-secrets", "guard.debugMayMountSecrets: true"],
                 id="debug-mounts-secrets-by-default"),
    pytest.param(debugged("deployment-native", debug_container(volumeMounts=[SECRETS_RO])),
                 ALLOW_SECRETS, True, [], id="debug-mounts-secrets-read-only-with-the-switch"),
    pytest.param(debugged("deployment-native",
                          debug_container(volumeMounts=[mount("latchkey-secrets", "/x")])),
                 ALLOW_SECRETS, False, ["writable", "readOnly: true"],
                 id="debug-mounts-secrets-writable-with-the-switch"),
    pytest.param(debugged("env-distroless", debug_container(volumeMounts=[BIN_RO])),
                 CONFIG, False, ["volume latchkey-bin", "the env values"],
                 id="debug-mounts-env-values"),
    pytest.param(debugged("deployment-native", debug_container(targetContainerName="web")),
                 CONFIG, True, [], id="plain-kubectl-debug-target-app"),
    pytest.param(debugged("deployment-native", debug_container(targetContainerName=AGENT)),
                 CONFIG, True, [], id="plain-kubectl-debug-target-agent"),
    pytest.param(debugged("deployment-native", debug_container(
                     targetContainerName="latchkey-agent", securityContext=PTRACE)),
                 CONFIG, False, ["targets the latchkey agent", "CAP_SYS_PTRACE"],
                 id="ptrace-debug-target-agent"),
    pytest.param(debugged("on-change-signal", debug_container(
                     targetContainerName="nginx", securityContext={"privileged": True})),
                 CONFIG, False, ["shares the pod's process namespace with the latchkey agent"],
                 id="privileged-debug-shared-process-namespace"),
    pytest.param(debugged("deployment-native", debug_container(
                     targetContainerName="web", securityContext={"privileged": True})),
                 CONFIG, True, [], id="privileged-debug-of-the-app-alone"),
    pytest.param(reimaged("deployment-native", "latchkey-agent", "evil.example/agent:1"),
                 CONFIG, False, ["image of container latchkey-agent may not change",
                                 "evil.example/agent:1"], id="agent-image-changed"),
    pytest.param(reimaged("deployment-classic-fsgroup", "latchkey-init", "evil.example/agent:1"),
                 CONFIG, False, ["image of container latchkey-init may not change"],
                 id="classic-init-image-changed"),
    pytest.param(reimaged("deployment-native", "web", "registry.example/web:1.5"),
                 CONFIG, True, [], id="app-image-changed"),
]  # fmt: skip


def _post(config: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """The real ASGI app's answer to ``body`` on /validate, and its guard denial counters."""

    async def send() -> tuple[dict[str, Any], dict[str, float]]:
        transport = httpx.ASGITransport(app=create_app(config))
        async with httpx.AsyncClient(transport=transport, base_url="https://webhook") as client:
            answer = await client.post("/validate", json=body)
            assert answer.status_code == 200, answer.text
            text = (await client.get("/metrics")).text
        counts = {
            sample.labels["rule"]: sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "latchkey_webhook_guard_denials"
            for sample in family.samples
            if sample.name.endswith("_total")
        }
        return answer.json()["response"], counts

    return asyncio.run(send())


@pytest.mark.parametrize(("body", "config", "allowed", "fragments"), CASES)
def test_guard_answers(
    body: dict[str, Any], config: Any, allowed: bool, fragments: list[str]
) -> None:
    response, counts = _post(config, body)
    assert response["uid"] == body["request"]["uid"]
    assert response["allowed"] is allowed, response
    assert "patch" not in response, "a validating webhook never patches"
    if allowed:
        assert sum(counts.values()) == 0
        return
    message = response["status"]["message"]
    assert message.startswith("latchkey: ")
    for fragment in fragments:
        assert fragment in message
    assert response["status"]["code"] == 403
    assert sum(counts.values()) >= 1


def test_a_debug_container_already_there_is_not_judged_again() -> None:
    """Only containers the update adds count: an old one was judged when it was added."""
    old = running("deployment-native")
    old["spec"]["ephemeralContainers"] = [debug_container(volumeMounts=[TOKEN_MOUNT])]
    pod = copy.deepcopy(old)
    pod["spec"]["ephemeralContainers"].append(debug_container())
    assert check_update(pod, old, sub_resource="ephemeralcontainers", settings=CONFIG.guard) == []


@pytest.mark.parametrize(
    ("operation", "sub_resource"),
    [("CREATE", ""), ("UPDATE", "status"), ("DELETE", ""), ("UPDATE", "binding")],
)
def test_other_requests_pass_untouched(operation: str, sub_resource: str) -> None:
    body = debugged("deployment-native", debug_container(volumeMounts=[TOKEN_MOUNT]))
    body["request"] |= {"operation": operation, "subResource": sub_resource}
    response, _ = _post(CONFIG, body)
    assert response["allowed"] is True


def test_a_debug_mount_name_that_is_not_a_string_is_no_internal_error() -> None:
    body = debugged("deployment-native", debug_container(volumeMounts=[{"name": ["x"]}]))
    response, _ = _post(CONFIG, body)
    assert response["allowed"] is True
