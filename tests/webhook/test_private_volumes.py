"""Latchkey's volumes are its own: a pod cannot hand them to an app container by naming
them in its mounts, before injection or (through a later webhook) on reinvocation.

Mutating admission runs before validation, so a mount naming ``latchkey-token`` is
valid once the webhook has added that volume: it must be refused here. The pods are
a Deployment's pod exactly as the API server sends it, with hostile mounts added.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.settings import load_config

FIXTURES = Path(__file__).parents[1] / "fixtures"
CONFIG = load_config(FIXTURES / "config.yaml")
REVIEW = json.loads((FIXTURES / "reviews" / "deployment-native.json").read_text())
POD: dict[str, Any] = REVIEW["request"]["object"]
NAMESPACE = REVIEW["request"]["namespace"]


def with_mount(volume: str, *, container: str = "api", read_only: bool = False,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The pod with ``container`` (added when missing, as a sidecar) mounting ``volume``."""
    pod = copy.deepcopy(POD)
    spec = pod["spec"]
    if extra:
        spec["containers"].append(extra)
    target = next(c for c in spec["containers"] if c["name"] == container)
    mount = {"name": volume, "mountPath": "/stolen", **({"readOnly": True} if read_only else {})}
    target["volumeMounts"] = [*target.get("volumeMounts", []), mount]
    return pod


SIDECAR = {"name": "logger", "image": "registry.example/logger:2", "command": ["/logger"]}
ONLY_API = {"latchkey.dev/containers": "api"}

HOSTILE = [
    pytest.param(with_mount("latchkey-token"), "container api mounts volume latchkey-token",
                 id="app-mounts-token"),
    pytest.param(with_mount("latchkey-state", read_only=True),
                 "container api mounts volume latchkey-state", id="app-mounts-state-read-only"),
    pytest.param(with_mount("latchkey-bin"), "container api mounts volume latchkey-bin",
                 id="app-mounts-wrapper"),
    pytest.param(with_mount("latchkey-signal-mark"),
                 "container api mounts volume latchkey-signal-mark", id="app-mounts-mark"),
    pytest.param(with_mount("latchkey-secrets"),
                 "container api mounts volume latchkey-secrets writable", id="secrets-writable"),
    pytest.param(with_mount("latchkey-secrets", container="logger", read_only=True,
                            extra=SIDECAR),
                 "container logger mounts volume latchkey-secrets but is not one of the "
                 "containers that get the secrets", id="secrets-in-a-left-out-container"),
]  # fmt: skip


def _annotate(pod: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    pod["metadata"]["annotations"] |= annotations
    return pod


@pytest.mark.parametrize(("pod", "fragment"), HOSTILE)
def test_hostile_mount_is_denied_naming_container_and_volume(
    pod: dict[str, Any], fragment: str
) -> None:
    if any(c["name"] == "logger" for c in pod["spec"]["containers"]):
        pod = _annotate(pod, ONLY_API)
    with pytest.raises(Denied) as denied:
        mutate_pod(pod, namespace=NAMESPACE, config=CONFIG)
    assert fragment in str(denied.value)
    assert "remove that mount" in str(denied.value)


def test_a_selected_container_may_mount_the_secrets_read_only_itself() -> None:
    pod = with_mount("latchkey-secrets", read_only=True)
    assert mutate_pod(pod, namespace=NAMESPACE, config=CONFIG).outcome == "injected"


def _injected() -> dict[str, Any]:
    mutation = mutate_pod(copy.deepcopy(POD), namespace=NAMESPACE, config=CONFIG)
    assert mutation.pod is not None
    return copy.deepcopy(mutation.pod)


def test_reinvocation_refuses_what_a_later_webhook_added() -> None:
    """Another webhook, run after ours, gives the app the token: called again, we refuse."""
    pod = _injected()
    api = next(c for c in pod["spec"]["containers"] if c["name"] == "api")
    api["volumeMounts"].append({"name": "latchkey-token", "mountPath": "/t", "readOnly": True})
    with pytest.raises(Denied, match="container api mounts volume latchkey-token"):
        mutate_pod(pod, namespace=NAMESPACE, config=CONFIG)


def test_reinvocation_of_an_untouched_injected_pod_changes_nothing() -> None:
    pod = _injected()
    mutation = mutate_pod(pod, namespace=NAMESPACE, config=CONFIG)
    assert (mutation.outcome, mutation.patch) == ("already-injected", [])


@pytest.mark.parametrize("name", [["latchkey-token"], {"a": 1}, 7, None])
def test_a_mount_name_that_is_not_a_string_is_no_internal_error(name: object) -> None:
    """Found by the schemathesis fuzz: an odd mount name is the API server's to refuse."""
    pod = with_mount("latchkey-token")
    pod["spec"]["containers"][0]["volumeMounts"][-1]["name"] = name
    assert mutate_pod(pod, namespace=NAMESPACE, config=CONFIG).outcome == "injected"
