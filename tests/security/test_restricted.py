"""SECURITY.md, "What the webhook adds": injected containers meet the Pod Security Standards
"restricted" profile field by field, secrets and state live in memory only, and the files'
modes follow the ownership rules (0400 as the app's uid, 0440 through fsGroup, else 0444)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.config import AgentConfig, parse
from tests.security.pods import Pod, golden_pods, ours, theirs
from webhook.containers import BIN, SECRETS, STATE, TOKEN
from webhook.ownership import GROUP_READ, OWNER_ONLY, WORLD_READ, effective_uid

# Volume types the restricted profile allows (kubernetes.io: "Pod Security Standards").
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip
ALLOWED_SECCOMP = {"RuntimeDefault", "Localhost"}
FORBIDDEN_CONTAINER_FIELDS = {"ports"}  # no hostPort: the agent listens nowhere


def restricted_problems(container: dict[str, Any]) -> list[str]:
    """Every way ``container`` falls short of the restricted profile, or of a read-only root."""
    context = container.get("securityContext", {})
    capabilities = context.get("capabilities", {})
    checks = {
        "privileged": context.get("privileged", False) is False,
        "allowPrivilegeEscalation": context.get("allowPrivilegeEscalation") is False,
        "capabilities.drop ALL": capabilities.get("drop") == ["ALL"],
        "capabilities.add": set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"},
        "runAsNonRoot": context.get("runAsNonRoot") is True,
        "runAsUser not 0": context.get("runAsUser") != 0,
        "seccompProfile": context.get("seccompProfile", {}).get("type") in ALLOWED_SECCOMP,
        "procMount": context.get("procMount", "Default") == "Default",
        "seLinuxOptions": not context.get("seLinuxOptions"),
        "windowsOptions.hostProcess": not context.get("windowsOptions", {}).get("hostProcess"),
        "appArmor": context.get("appArmorProfile", {}).get("type") != "Unconfined",
        "readOnlyRootFilesystem": context.get("readOnlyRootFilesystem") is True,
        "no host ports": not FORBIDDEN_CONTAINER_FIELDS & set(container),
    }  # fmt: skip
    return [name for name, ok in checks.items() if not ok]


@pytest.mark.parametrize("pod", golden_pods())
def test_injected_containers_meet_the_restricted_profile(pod: Pod) -> None:
    for container in ours(pod):
        assert restricted_problems(container) == [], container["name"]


@pytest.mark.parametrize("pod", golden_pods())
def test_added_volumes_are_allowed_and_secrets_stay_in_memory(pod: Pod) -> None:
    added = {
        v["name"]: v for v in pod["spec"]["volumes"] if v["name"] in {SECRETS, TOKEN, STATE, BIN}
    }
    assert {SECRETS, TOKEN, STATE} <= set(added)
    for name, volume in added.items():
        kinds = set(volume) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, name
        if "emptyDir" in kinds:
            assert volume["emptyDir"]["medium"] == "Memory", name
            assert volume["emptyDir"]["sizeLimit"], name
    spec = pod["spec"]
    assert not any(spec.get(field) for field in ("hostNetwork", "hostPID", "hostIPC"))


@pytest.mark.parametrize("pod", golden_pods())
def test_file_modes_follow_who_can_read_them(pod: Pod) -> None:
    agent = ours(pod)[0]
    config = parse(AgentConfig, json.loads(agent["env"][0]["value"]))
    readers = [c for c in theirs(pod) if SECRETS in {m["name"] for m in c.get("volumeMounts", [])}]
    uids = {effective_uid(c, pod["spec"]) for c in readers}
    context = agent["securityContext"]
    fs_group = pod["spec"].get("securityContext", {}).get("fsGroup")
    if len(uids) == 1 and None not in uids:
        expected = OWNER_ONLY
        assert context["runAsUser"] == uids.pop()
    elif fs_group:
        expected = GROUP_READ
        assert context["runAsGroup"] == fs_group
    else:
        expected = WORLD_READ
    explicit = {f.name for f in config.files if f.mode != expected}
    annotated = {
        k.removeprefix("latchkey.dev/file-mode-")
        for k in pod["metadata"]["annotations"]
        if k.startswith("latchkey.dev/file-mode-")
    }
    assert explicit <= annotated
    for container in readers:
        mount = next(m for m in container["volumeMounts"] if m["name"] == SECRETS)
        assert mount["readOnly"] is True
