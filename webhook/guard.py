"""Guarding an injected pod after admission: nothing added later may reach the agent's
store token or its saved state.

Two kinds of UPDATE of a running pod go through admission and could hand another
process the agent's volumes, so the ``latchkey-guard`` validating webhook sends them
here (its matchConditions send only injected pods, and for ``pods`` only when one of
our containers' images changed):

- ``pods/ephemeralcontainers`` (``kubectl debug``): a debug container may name any
  pod volume in its ``volumeMounts``. ``latchkey-token`` and ``latchkey-state`` are
  the agent's alone; the secrets and the env file are what the app sees anyway, but a
  debugger is often not someone who may read them, so only the admin's
  ``guard.debugMayMountSecrets`` lets one mount them, read-only. A privileged debug
  container, or one adding ``CAP_SYS_PTRACE`` or ``CAP_SYS_ADMIN``, that shares the
  agent's process namespace could read the agent's token through ``/proc`` in spite
  of its being non-dumpable, so that is refused too. Plain ``--target`` debugging
  passes.
- ``pods``: a container's image is one of the few fields a pod update may change; a
  new image for ``latchkey-agent`` or ``latchkey-init`` would run someone else's
  code with the token mounted.

Pure: the pod before and after in, the refusals found out (none: allow), each with a
bounded rule name for the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from webhook.containers import AGENT, BIN, INIT, SECRETS, STATE, TOKEN
from webhook.settings import GuardSettings
from webhook.targets import containers_of

Obj = Mapping[str, Any]
AGENT_ONLY = {TOKEN: "the agent's store-audience token", STATE: "the agent's saved store token"}
SECRET_VALUES = {SECRETS: "the secret files", BIN: "the env values"}
OURS = (INIT, AGENT)
REACHING_CAPS = frozenset({"SYS_PTRACE", "SYS_ADMIN", "ALL"})


class Refusal(NamedTuple):
    """One reason to refuse: the rule (a metric label) and the message for the user."""

    rule: str
    message: str


def _spec(pod: Obj) -> Obj:
    spec = pod.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def check_update(
    pod: Obj, old: Obj, *, sub_resource: str, settings: GuardSettings
) -> list[Refusal]:
    """Every reason to refuse this update of an injected pod; none means allow."""
    if sub_resource == "ephemeralcontainers":
        known = {c.get("name") for c in containers_of(_spec(old), "ephemeralContainers")}
        debug = containers_of(_spec(pod), "ephemeralContainers")
        added = [c for c in debug if c.get("name") not in known]
        shared = _spec(pod).get("shareProcessNamespace") is True
        return [p for c in added for p in _ephemeral(c, shared=shared, settings=settings)]
    if not sub_resource:
        return _agent_images(pod, old)
    return []


def _ephemeral(container: Obj, *, shared: bool, settings: GuardSettings) -> list[Refusal]:
    name = container.get("name")
    problems = []
    for mount in containers_of(container, "volumeMounts"):
        volume = mount.get("name")
        if not isinstance(volume, str):
            continue  # not a volume name: the API server's validation refuses it
        if volume in AGENT_ONLY:
            problems.append(
                Refusal(
                    "debug-agent-volume",
                    f"ephemeral container {name} mounts volume {volume}, {AGENT_ONLY[volume]}, "
                    "which no container but the latchkey agent may read; remove that mount",
                )
            )
        elif volume in SECRET_VALUES and not settings.debug_may_mount_secrets:
            problems.append(
                Refusal(
                    "debug-secrets",
                    f"ephemeral container {name} mounts volume {volume} ({SECRET_VALUES[volume]}); "
                    "debug containers may mount it only read-only and only where the latchkey "
                    "admin sets guard.debugMayMountSecrets: true",
                )
            )
        elif volume in SECRET_VALUES and mount.get("readOnly") is not True:
            problems.append(
                Refusal(
                    "debug-secrets",
                    f"ephemeral container {name} mounts volume {volume} writable; "
                    "debug containers may mount it only with readOnly: true",
                )
            )
    reaches_agent = container.get("targetContainerName") in OURS or shared
    if reaches_agent and _can_read_other_processes(container):
        where = (
            "targets the latchkey agent"
            if container.get("targetContainerName") in OURS
            else "shares the pod's process namespace with the latchkey agent"
        )
        problems.append(
            Refusal(
                "debug-ptrace",
                f"ephemeral container {name} {where} and is privileged or adds CAP_SYS_PTRACE "
                "or CAP_SYS_ADMIN, which would let it read the agent's token through /proc; "
                "debug without them (kubectl debug's default profile) or target another container",
            )
        )
    return problems


def _can_read_other_processes(container: Obj) -> bool:
    context = container.get("securityContext")
    if not isinstance(context, Mapping):
        return False
    capabilities = context.get("capabilities")
    added = capabilities.get("add") if isinstance(capabilities, Mapping) else None
    names = (
        {str(c).upper().removeprefix("CAP_") for c in added} if isinstance(added, list) else set()
    )
    return context.get("privileged") is True or bool(names & REACHING_CAPS)


def _agent_images(pod: Obj, old: Obj) -> list[Refusal]:
    def images(obj: Obj) -> dict[str, Any]:
        spec = _spec(obj)
        every = [*containers_of(spec, "initContainers"), *containers_of(spec, "containers")]
        return {str(c["name"]): c.get("image") for c in every if c.get("name") in OURS}

    before, after = images(old), images(pod)
    return [
        Refusal(
            "agent-image",
            f"the image of container {name} may not change on a running pod ({before[name]} -> "
            f"{image}): it runs with the agent's token mounted; recreate the pod instead",
        )
        for name, image in after.items()
        if name in before and image != before[name]
    ]
