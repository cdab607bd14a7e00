"""Pure builders for what the webhook adds to a pod: volumes, mounts, agent containers.

Each returns fresh plain dicts in the shape the API server stores, so the
mutation can drop them into the pod copy and let ``jsonpatch`` diff the result.
Deciding *what* to add (which containers, which uid) is not done here.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from sidecar.config import BIN_DIR, CONFIG_ENV, SIGNAL_MARK_DIR, STATE_DIR, TOKEN_DIR
from webhook.ownership import Ownership
from webhook.settings import AgentSettings, Resources

INIT, AGENT = "latchkey-init", "latchkey-agent"
SECRETS, TOKEN, STATE, BIN = "latchkey-secrets", "latchkey-token", "latchkey-state", "latchkey-bin"
MARK = "latchkey-signal-mark"
VOLUMES = (SECRETS, TOKEN, STATE, BIN, MARK)
COMMAND = "latchkey-sidecar"
# Our directories as mount paths, made once rather than for every pod.
TOKEN_MOUNT, STATE_MOUNT, BIN_MOUNT = str(TOKEN_DIR), str(STATE_DIR), str(BIN_DIR)
STATE_SIZE, BIN_SIZE, MARK_SIZE = "1Mi", "8Mi", "4Ki"

Obj = dict[str, Any]


def _memory_dir(name: str, size: str) -> Obj:
    return {"name": name, "emptyDir": {"medium": "Memory", "sizeLimit": size}}


def volumes(*, audience: str, agent: AgentSettings, with_bin: bool) -> list[Obj]:
    """The pod volumes; secrets and state live in memory so they never touch the node's disk."""
    token = {
        "name": TOKEN,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": audience,
                        "expirationSeconds": agent.token_expiration_seconds,
                        "path": "token",
                    }
                }
            ]
        },
    }
    added = [_memory_dir(SECRETS, agent.secrets_size_limit), token, _memory_dir(STATE, STATE_SIZE)]
    return [*added, _memory_dir(BIN, BIN_SIZE)] if with_bin else added


def mark_volume() -> Obj:
    """The empty volume whose mount points mark the ``on-change`` signal targets."""
    return _memory_dir(MARK, MARK_SIZE)


def mark_mount(container: str) -> Obj:
    """Where a signal target mounts the mark: the agent finds its processes by it."""
    path = f"{SIGNAL_MARK_DIR}/{container}"  # a container name is one path segment
    return {"name": MARK, "mountPath": path, "readOnly": True}


def app_mounts(mount_path: str, *, with_bin: bool) -> list[Obj]:
    """Read-only mounts for a selected app container; never the token."""
    mounts = [{"name": SECRETS, "mountPath": mount_path, "readOnly": True}]
    if with_bin:
        mounts.append({"name": BIN, "mountPath": BIN_MOUNT, "readOnly": True})
    return mounts


def agent_mounts(mount_path: str, *, with_bin: bool) -> list[Obj]:
    """The agent writes secrets, state and the wrapper; it only reads its token."""
    mounts: list[Obj] = [
        {"name": SECRETS, "mountPath": mount_path},
        {"name": TOKEN, "mountPath": TOKEN_MOUNT, "readOnly": True},
        {"name": STATE, "mountPath": STATE_MOUNT},
    ]
    if with_bin:
        mounts.append({"name": BIN, "mountPath": BIN_MOUNT})
    return mounts


def resources(agent: AgentSettings, *, cpu: str | None, memory: str | None) -> Obj:
    """Config resources, with the pod's ``agent-cpu``/``agent-memory`` overrides."""
    result: Obj = {kind: dict(values) for kind, values in _dumped(agent.resources).items()}
    if cpu is not None:
        result.setdefault("requests", {})["cpu"] = cpu
    if memory is not None:
        result.setdefault("requests", {})["memory"] = memory
        result.setdefault("limits", {})["memory"] = memory
    return {kind: values for kind, values in result.items() if values}


@functools.lru_cache(maxsize=8)
def _dumped(resources: Resources) -> dict[str, dict[str, str]]:
    """The config's resources as plain dicts, dumped once per config rather than per pod
    (the model is frozen, so hashable); :func:`resources` edits only copies of them."""
    return resources.model_dump(exclude_none=True)


class AgentSpec(msgspec.Struct, frozen=True):
    """What every injected container shares."""

    image: str
    pull_policy: str
    config_json: str
    resources: Obj
    ownership: Ownership
    mounts: tuple[Obj, ...]


def _security_context(ownership: Ownership) -> Obj:
    """The Pod Security Standards "restricted" profile, as the chosen uid and gid."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsGroup": ownership.gid,
        "runAsNonRoot": True,
        "runAsUser": ownership.uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(kind: str, **timing: int) -> Obj:
    return {"exec": {"command": [COMMAND, "probe", kind]}, **timing}


def _container(name: str, command: list[str], spec: AgentSpec) -> Obj:
    return {
        "name": name,
        "image": spec.image,
        "imagePullPolicy": spec.pull_policy,
        "command": command,
        "env": [{"name": CONFIG_ENV, "value": spec.config_json}],
        "resources": spec.resources,
        "volumeMounts": [dict(mount) for mount in spec.mounts],
        "securityContext": _security_context(spec.ownership),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def init_container(spec: AgentSpec) -> Obj:
    """``latchkey-init``: fetch and write once, so the app starts with its secrets."""
    return _container(INIT, [COMMAND, "--once"], spec)


def _liveness() -> Obj:
    return _probe("liveness", periodSeconds=10, failureThreshold=3, timeoutSeconds=5)


def native_agent(spec: AgentSpec) -> Obj:
    """A native sidecar (init container, ``restartPolicy: Always``) that does both jobs.

    The startup probe holds the next containers back until the first full write; a
    readiness probe would not.
    """
    return {
        **_container(AGENT, [COMMAND], spec),
        "restartPolicy": "Always",
        "startupProbe": _probe("startup", periodSeconds=1, failureThreshold=300),
        "livenessProbe": _liveness(),
    }


def classic_agent(spec: AgentSpec) -> Obj:
    """The long-running agent as an ordinary container, beside ``latchkey-init``."""
    return {**_container(AGENT, [COMMAND], spec), "livenessProbe": _liveness()}
