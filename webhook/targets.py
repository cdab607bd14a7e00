"""Checks of a parsed request against the pod it came on, and the containers it targets.

:mod:`webhook.annotations` knows each value is well formed; only here is it known
whether the named containers exist, have a command to wrap, already define an
env var, or run as a uid the agent can signal. Problems are recorded, not raised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import msgspec

from sidecar.config import SIGNAL_MARK_DIR, SignalAction
from webhook.annotations import InjectRequest
from webhook.containers import AGENT, BIN, BIN_MOUNT, INIT, MARK, SECRETS, STATE, TOKEN, VOLUMES
from webhook.ownership import Ownership, decide, effective_uid, security_context
from webhook.problems import PREFIX, Problems, echo
from webhook.settings import WebhookConfig
from webhook.shape import OBJECT

SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public"})
# Volumes no container but ours may mount; the secrets volume is checked apart.
PRIVATE_VOLUMES = frozenset({TOKEN, STATE, BIN, MARK})
AGENT_ONLY_VOLUMES = frozenset({TOKEN, STATE})
# Our init container goes after these, so the agent reaches the store through the mesh.
MESH_CONTAINERS = frozenset(
    {"istio-init", "istio-validation", "istio-proxy", "linkerd-init",
     "linkerd-network-validator", "linkerd-proxy"}
)  # fmt: skip
MESH_PROXIES = frozenset({"istio-proxy", "linkerd-proxy"})
CLASSIC_PROXY_WARNING = (
    "latchkey: {proxy} runs as an ordinary container, so it starts after the latchkey init "
    "container, whose traffic the mesh already redirects; enable the mesh's native sidecars "
    "or exclude the store's port from redirection, or the pod will not start"
)

Container = Mapping[str, Any]


class Targets(msgspec.Struct, frozen=True):
    """Where the injection lands: selected containers by kind, our init slot, ownership."""

    containers: tuple[str, ...]
    init_containers: tuple[str, ...]
    insert_at: int
    ownership: Ownership
    role: str
    warnings: tuple[str, ...] = ()
    common_names: tuple[tuple[str, str], ...] = ()  # certificate -> its default common name


def containers_of(spec: Mapping[str, Any], field: str) -> list[Container]:
    """The pod's ``containers`` or ``initContainers``, tolerating absent or odd fields."""
    items = spec.get(field)
    return [c for c in items if isinstance(c, OBJECT)] if isinstance(items, list) else []


def check(
    spec: Mapping[str, Any],
    request: InjectRequest,
    *,
    namespace: str,
    config: WebhookConfig,
    problems: Problems,
) -> Targets:
    """The targets of ``request`` in a pod with ``spec``; every problem found is recorded."""
    if namespace in SYSTEM_NAMESPACES:
        problems.add("inject", f"pods in the system namespace {namespace} are never injected")
    apps, inits = containers_of(spec, "containers"), containers_of(spec, "initContainers")
    _our_names_free(spec, [*apps, *inits], problems)
    insert_at = max(
        (i + 1 for i, c in enumerate(inits) if c.get("name") in MESH_CONTAINERS), default=0
    )
    chosen = _select(request, apps, inits, insert_at=insert_at, problems=problems)
    ownership = decide(chosen, pod_spec=spec, fallback_uid=config.agent.run_as_user)
    if request.env:
        _env_checks(request, chosen, problems)
    _mount_clashes(request, chosen, problems)
    private_mounts(spec, selected={str(c.get("name")) for c in chosen}, problems=problems)
    signals = [a for a in request.on_change if isinstance(a, SignalAction)]
    for action in signals:
        _signal_check(action, apps, spec=spec, ownership=ownership, problems=problems)
    names = {c.get("name") for c in chosen}
    shared = _shared_pid_readers(spec, names, ownership, problems) if signals else ()
    return Targets(
        containers=tuple(c["name"] for c in apps if c.get("name") in names),
        init_containers=tuple(c["name"] for c in inits if c.get("name") in names),
        insert_at=insert_at,
        ownership=ownership,
        role=_role(request, spec, config=config, problems=problems),
        warnings=(*_mesh_warnings(apps, inits), *shared),
        common_names=_common_names(request, spec, namespace=namespace, problems=problems),
    )


def _shared_pid_readers(
    spec: Mapping[str, Any], selected: set[Any], ownership: Ownership, problems: Problems
) -> tuple[str, ...]:
    """A signal on-change shares the PID namespace: a container left out of the secrets
    but running as the app's uid could read them through ``/proc/<pid>/root`` (and the
    ``env-`` values through ``/proc/<pid>/environ``). Deny that; warn where its uid is
    the image's to choose."""
    warnings = []
    running = [
        *containers_of(spec, "containers"),
        *(c for c in containers_of(spec, "initContainers") if c.get("restartPolicy") == "Always"),
    ]
    for container in running:
        name = container.get("name")
        if name in selected or name in (INIT, AGENT):
            continue
        uid = effective_uid(container, spec)
        caps = (security_context(container).get("capabilities") or {}).get("add") or []
        ptrace = any(str(c).upper().removeprefix("CAP_") in ("SYS_PTRACE", "ALL") for c in caps)
        if uid == ownership.uid or ptrace:
            why = f"runs as uid {uid}" if uid == ownership.uid else "adds CAP_SYS_PTRACE"
            problems.add(
                "on-change",
                f"a signal shares the pod's process namespace, and container {name}, which "
                f"does not get the secrets, {why}: it could read them through /proc; give it "
                f"another runAsUser, add it to {PREFIX}containers, or use an "
                "http://localhost on-change, which shares nothing",
            )
        elif uid is None:
            warnings.append(
                f"latchkey: a signal shares the pod's process namespace, and container {name}, "
                "which does not get the secrets, runs as the uid its image names: if that is "
                f"{ownership.uid} it can read them through /proc; set its runAsUser, or use an "
                "http://localhost on-change"
            )
    return tuple(warnings)


def _common_names(
    request: InjectRequest, spec: Mapping[str, Any], *, namespace: str, problems: Problems
) -> tuple[tuple[str, str], ...]:
    """A certificate without a common_name gets the pod's own DNS name, which a pod has
    when it sets ``hostname`` and ``subdomain`` (a headless Service's name)."""
    names = []
    hostname, subdomain = spec.get("hostname"), spec.get("subdomain")
    for certificate in request.certificates:
        if any(key == "common_name" for key, _ in certificate.params):
            continue
        if isinstance(hostname, str) and isinstance(subdomain, str) and hostname and subdomain:
            names.append(
                (certificate.name, f"{hostname}.{subdomain}.{namespace}.svc.cluster.local")
            )
            continue
        problems.add(
            f"cert-params-{certificate.name}",
            "no common_name, and the pod has no DNS name of its own (spec.hostname and "
            f'spec.subdomain): set it, as {{"common_name": "web.{namespace}.svc"}}',
        )
    return tuple(names)


def _mesh_warnings(apps: Sequence[Container], inits: Sequence[Container]) -> tuple[str, ...]:
    """A mesh that redirects traffic in an init container but starts its proxy late."""
    if not any(c.get("name") in {"istio-init", "linkerd-init"} for c in inits):
        return ()
    late = sorted(str(c.get("name")) for c in apps if c.get("name") in MESH_PROXIES)
    return tuple(CLASSIC_PROXY_WARNING.format(proxy=p) for p in late)


def _our_names_free(
    spec: Mapping[str, Any], containers: Sequence[Container], problems: Problems
) -> None:
    taken = {str(c.get("name")) for c in containers}
    for name in sorted(taken & {INIT, AGENT}):
        problems.add("inject", f"the pod already has a container named {name}; rename it")
    volumes = spec.get("volumes")
    used = {str(v.get("name")) for v in volumes or [] if isinstance(v, OBJECT)}
    for name in sorted(used & set(VOLUMES)):
        problems.add("inject", f"the pod already has a volume named {name}; rename it")


def _select(
    request: InjectRequest,
    apps: Sequence[Container],
    inits: Sequence[Container],
    *,
    insert_at: int,
    problems: Problems,
) -> list[Container]:
    """The containers that get the secrets: ``containers`` if set, else every app container
    but a mesh proxy (it has no use for the app's secrets)."""
    if request.containers is None:
        chosen = [c for c in apps if c.get("name") not in MESH_PROXIES]
        if not chosen:
            problems.add("inject", "the pod has no containers to give the secrets to")
        return chosen
    by_name = {c.get("name"): c for c in [*apps, *inits]}
    unknown = [name for name in request.containers if name not in by_name]
    if unknown:
        valid = ", ".join(sorted(str(n) for n in by_name)) or "none"
        problems.add("containers", f"no container named {echo(', '.join(unknown))}; valid: {valid}")
    early = [c.get("name") for c in inits[:insert_at] if c.get("name") in request.containers]
    for name in early:
        problems.add("containers", f"{name} runs before the latchkey agent and cannot get secrets")
    return [by_name[n] for n in request.containers if n in by_name and n not in early]


def _env_checks(request: InjectRequest, chosen: Sequence[Container], problems: Problems) -> None:
    first = f"env-{request.env[0].name}"
    for container in chosen:
        name = container.get("name")
        if not isinstance(container.get("command"), list) or not container["command"]:
            problems.add(
                first, f"the original command is unknown: set `command` on container {name}"
            )
        defined = {e.get("name") for e in container.get("env") or [] if isinstance(e, OBJECT)}
        for env in request.env:
            if env.name in defined:
                problems.add(
                    f"env-{env.name}",
                    f"container {name} already defines {env.name}; remove it there or rename it",
                )


def private_mounts(
    spec: Mapping[str, Any], *, selected: set[str] | None, problems: Problems
) -> None:
    """No container but ours may mount the token, the state, the wrapper or the mark;
    the secrets only read-only, and (when ``selected`` is known) only where selected.

    Mutating admission runs before validation: a pod naming our volumes in its mounts
    becomes valid once the webhook adds them, so this is checked before, and again
    on reinvocation (``selected`` None: the pod is already injected).
    """
    # Once injected, app containers carry the read-only wrapper and mark mounts we gave.
    private = PRIVATE_VOLUMES if selected is not None else AGENT_ONLY_VOLUMES
    read_only = {SECRETS} if selected is not None else {SECRETS, BIN, MARK}
    for field in ("containers", "initContainers", "ephemeralContainers"):
        for container in containers_of(spec, field):
            name = container.get("name")
            if name in (INIT, AGENT):
                continue
            for mount in containers_of(container, "volumeMounts"):
                volume = mount.get("name")
                if not isinstance(volume, str):
                    continue  # not a volume name: the API server's validation refuses it
                if volume in private:
                    problems.add(
                        "inject",
                        f"container {name} mounts volume {volume}, which only latchkey's own "
                        "containers may mount (it holds the agent's credentials or files); "
                        "remove that mount",
                    )
                elif volume in read_only and mount.get("readOnly") is not True:
                    problems.add(
                        "inject",
                        f"container {name} mounts volume {volume} writable; latchkey mounts "
                        "it read-only into the containers it selects: remove that mount",
                    )
                elif volume == SECRETS and selected is not None and str(name) not in selected:
                    problems.add(
                        "inject",
                        f"container {name} mounts volume {SECRETS} but is not one of the "
                        "containers that get the secrets; remove that mount or add it to "
                        f"{PREFIX}containers",
                    )


def posix(path: str) -> str:
    """``str(PurePosixPath(path))``: slashes collapsed, ``.`` parts and a trailing slash
    dropped. Two paths name one directory when these are equal. A path that is already
    so (nearly every one) is returned as it is, without building a PurePosixPath."""
    if path and "//" not in path and "/." not in path and path[0] != "." and path[-1] != "/":
        return path
    return str(PurePosixPath(path))


def _within(path: str, directory: str) -> bool:
    """``PurePosixPath(path).is_relative_to(directory)`` for paths :func:`posix` gives,
    without building one per mount of the pod."""
    return path == directory or path.startswith(directory + "/")


def _mount_clashes(request: InjectRequest, chosen: Sequence[Container], problems: Problems) -> None:
    """Two mounts at one path make the pod invalid; name the annotation that causes it."""
    ours = {posix(request.mount_path): "mount-path"}
    if request.env:
        ours[BIN_MOUNT] = f"env-{request.env[0].name}"
    for container in chosen:
        mounts = [m for m in container.get("volumeMounts") or [] if isinstance(m, OBJECT)]
        taken = {posix(str(m.get("mountPath", ""))) for m in mounts}
        for path, annotation in ours.items():
            if path in taken:
                problems.add(
                    annotation,
                    f"container {container.get('name')} already mounts a volume at {path}, "
                    "where latchkey needs its own",
                )


def _signal_check(
    action: SignalAction,
    apps: Sequence[Container],
    *,
    spec: Mapping[str, Any],
    ownership: Ownership,
    problems: Problems,
) -> None:
    target = next((c for c in apps if c.get("name") == action.container), None)
    if target is None:
        valid = ", ".join(sorted(str(c.get("name")) for c in apps))
        problems.add(
            "on-change", f"no container named {echo(action.container)} to signal; valid: {valid}"
        )
        return
    _signal_uid_check(action, target, spec=spec, ownership=ownership, problems=problems)
    mounts = [m for m in target.get("volumeMounts") or [] if isinstance(m, OBJECT)]
    mark = str(SIGNAL_MARK_DIR)
    if any(_within(posix(str(m.get("mountPath", ""))), mark) for m in mounts):
        problems.add(
            "on-change",
            f"container {action.container} already mounts a volume under {mark}, "
            "where latchkey marks the containers it signals",
        )


def _signal_uid_check(
    action: SignalAction,
    target: Container,
    *,
    spec: Mapping[str, Any],
    ownership: Ownership,
    problems: Problems,
) -> None:
    """kill(2) needs the sender's uid to be the target's: say what to set when it is not.

    Only the uid matters: the agent finds the target by a mount every uid can see,
    so the target's gid and groups may be anything (runAsGroup unset, or another).
    """
    target_uid = effective_uid(target, spec)
    if ownership.as_app and target_uid == ownership.uid:
        return
    name = action.container
    if target_uid is None:
        problems.add(
            "on-change",
            f"signalling {name} needs the agent to run as its uid, and the spec gives it no "
            f"non-root uid: set securityContext.runAsUser on container {name} or the pod",
        )
    elif not ownership.as_app:
        problems.add(
            "on-change",
            f"signalling {name} needs the agent to run as its uid {target_uid}, but the "
            "containers that get the secrets do not share one uid: set "
            f"securityContext.runAsUser: {target_uid} on each of them (or on the pod)",
        )
    else:
        problems.add(
            "on-change",
            f"signalling {name} needs the agent to run as its uid {target_uid}, but the "
            f"agent runs as {ownership.uid}, the uid of the containers that get the secrets: "
            f"set securityContext.runAsUser: {ownership.uid} on container {name}",
        )


def _role(
    request: InjectRequest, spec: Mapping[str, Any], *, config: WebhookConfig, problems: Problems
) -> str:
    """The role to log in as: the annotation, else the store's own (the role ARN for aws,
    the service account to impersonate for gcp, none for gcp without one, the client id
    for azure), else, for Vault, the pod's service account."""
    if request.role is not None:
        return request.role
    store = config.stores.get(request.store)
    if store is not None and store.kind == "gcp":
        return store.service_account or ""
    if store is not None and store.kind == "azure":
        return store.client_id
    if store is not None and store.kind == "aws":
        if store.role_arn is None:
            problems.add("role", f"store {request.store} has no roleArn; set a role ARN here")
        return store.role_arn or "unset"
    account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    return str(account)
