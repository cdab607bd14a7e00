"""The webhook's pure core: an annotated pod in, the JSON patch that injects the agent out.

The pod stays a plain dict throughout: it is deep-copied, the copy is edited,
and the patch is the JSON diff of the two (:mod:`webhook.diff`), so fields this code does not
know survive untouched. No I/O and no HTTP here; :mod:`webhook.app` owns those.
Works on a bare pod template (no name, no namespace) as well as on a Pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from sidecar.config import (
    BIN_DIR,
    ENV_FILE_NAME,
    WRAPPER_NAME,
    AgentConfig,
    CertificateFile,
    EnvSecret,
    RenderedFile,
    SecretFile,
    SignalAction,
    SourceSecret,
    store_audience,
)
from webhook import containers as build
from webhook.annotations import (
    STATUS_KEY,
    InjectRequest,
    ignored_warning,
    opt_in,
    parse,
    stray,
)
from webhook.diff import diff, writable_copy
from webhook.problems import PREFIX, Problems
from webhook.settings import WebhookConfig
from webhook.shape import OBJECT, check_shape
from webhook.targets import Targets, check, private_mounts

Obj = dict[str, Any]
Outcome = Literal["injected", "not-requested", "already-injected"]
# The env wrapper and the file it reads, as the app's command names them.
WRAPPER, ENV_FILE = str(BIN_DIR / WRAPPER_NAME), str(BIN_DIR / ENV_FILE_NAME)


class Mutation(msgspec.Struct, frozen=True):
    """What to answer for one pod: the outcome, the patch, and warnings for the user."""

    outcome: Outcome
    patch: list[dict[str, Any]]
    warnings: tuple[str, ...] = ()
    pod: dict[str, Any] | None = None


def mutate_pod(pod: Mapping[str, Any], *, namespace: str, config: WebhookConfig) -> Mutation:
    """Inject the agent into ``pod`` if it opts in.

    Raises webhook.errors.Denied (or its subclass AnnotationError) when the pod opts in
    but asks for something invalid; every problem found is in the one denial.
    """
    metadata = _mapping(pod.get("metadata"))
    annotations = _mapping(metadata.get("annotations"))
    state = opt_in(annotations)
    if state == "already-injected":
        # Called again after other webhooks changed the pod: none of them may have
        # given an app container our private volumes.
        problems = Problems()
        private_mounts(_mapping(pod.get("spec")), selected=None, problems=problems)
        problems.raise_if_any()
    if state == "stray":
        problems = Problems()
        stray(annotations, problems)
        problems.raise_if_any()
    if state == "opted-out":
        warning = ignored_warning(annotations)
        return Mutation(outcome="not-requested", patch=[], warnings=(warning,) if warning else ())
    if state != "requested":
        return Mutation(
            outcome="already-injected" if state == "already-injected" else "not-requested", patch=[]
        )
    check_shape(pod)
    problems = Problems()
    request = parse(annotations, config=config, problems=problems)
    spec = _mapping(pod.get("spec"))
    targets = check(spec, request, namespace=namespace, config=config, problems=problems)
    problems.raise_if_any()
    original = pod if isinstance(pod, dict) else dict(pod)
    mutated = writable_copy(original)
    _inject(mutated, request, targets, config=config)
    patch = diff(original, mutated)
    return Mutation(
        outcome="injected", patch=patch, warnings=_warnings(request, targets), pod=mutated
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, OBJECT) else {}


def agent_config(request: InjectRequest, targets: Targets, *, config: WebhookConfig) -> AgentConfig:
    """The ``LATCHKEY_CONFIG`` of the injected containers; the format default is the agent's."""
    files = tuple(
        SecretFile(
            name=file.name,
            path=file.path,
            key=file.key,
            format=None if file.template is not None else file.format,
            template=file.template,
            mode=targets.ownership.mode if file.mode is None else file.mode,
        )
        for file in request.files
    )
    env = tuple(EnvSecret(name=e.name, path=e.path, key=e.key) for e in request.env)
    sources = tuple(SourceSecret(name=s.name, path=s.path, key=s.key) for s in request.sources)
    renders = tuple(
        RenderedFile(
            name=r.name, template=r.template, uses=r.uses,
            mode=targets.ownership.mode if r.mode is None else r.mode,
        )
        for r in request.renders
    )  # fmt: skip
    common_names = dict(targets.common_names)
    certificates = tuple(
        CertificateFile(
            name=c.name, path=c.path,
            params={**({"common_name": common_names[c.name]} if c.name in common_names else {}),
                    **dict(c.params)},
            mode=targets.ownership.mode if c.mode is None else c.mode,
        )
        for c in request.certificates
    )  # fmt: skip
    return AgentConfig(
        store=config.stores[request.store],
        role=targets.role,
        secrets_dir=request.mount_path,
        files=files,
        sources=sources,
        renders=renders,
        certificates=certificates,
        env=env,
        env_file=ENV_FILE if env else None,
        wrapper_dir=build.BIN_MOUNT if env else None,
        refresh_seconds=request.refresh_seconds,
        on_change=request.on_change,
    )


def _inject(pod: Obj, request: InjectRequest, targets: Targets, *, config: WebhookConfig) -> None:
    """Edit the pod copy in place: status, volumes, app containers, then our containers."""
    pod.setdefault("metadata", {}).setdefault("annotations", {})[STATUS_KEY] = "injected"
    spec = pod.setdefault("spec", {})
    with_bin = bool(request.env)
    audience = store_audience(config.stores[request.store])
    added = build.volumes(audience=audience, agent=config.agent, with_bin=with_bin)
    spec["volumes"] = [*(spec.get("volumes") or []), *added]
    for field, names in (
        ("containers", targets.containers),
        ("initContainers", targets.init_containers),
    ):
        for container in spec.get(field) or []:
            if container.get("name") in names:
                _give_secrets(container, request)
    _mark_signal_targets(spec, request)
    _add_agents(spec, request, targets, config=config)


def _give_secrets(container: Obj, request: InjectRequest) -> None:
    """Mount the secrets read-only and, for ``env-``, start the app through the wrapper."""
    mounts = build.app_mounts(request.mount_path, with_bin=bool(request.env))
    container["volumeMounts"] = [*(container.get("volumeMounts") or []), *mounts]
    if request.env:
        container["command"] = [WRAPPER, ENV_FILE, "--", *container["command"]]


def _mark_signal_targets(spec: Obj, request: InjectRequest) -> None:
    """Let the agent find a signal target's processes, which it can see in a shared PID
    space, by the mark mounted in that container's mount namespace."""
    targets = {a.container for a in request.on_change if isinstance(a, SignalAction)}
    if not targets:
        return
    spec["shareProcessNamespace"] = True
    spec["volumes"] = [*(spec.get("volumes") or []), build.mark_volume()]
    for container in spec.get("containers") or []:
        if container.get("name") in targets:
            mark = build.mark_mount(container["name"])
            container["volumeMounts"] = [*(container.get("volumeMounts") or []), mark]


def _add_agents(
    spec: Obj, request: InjectRequest, targets: Targets, *, config: WebhookConfig
) -> None:
    """Our init container after any mesh init containers; the classic agent last."""
    agent = config.agent
    shared = build.AgentSpec(
        image=agent.image,
        pull_policy=agent.image_pull_policy,
        config_json=agent_config(request, targets, config=config).to_json(),
        resources=build.resources(agent, cpu=request.agent_cpu, memory=request.agent_memory),
        ownership=targets.ownership,
        mounts=tuple(build.agent_mounts(request.mount_path, with_bin=bool(request.env))),
    )
    if request.init_only or not agent.native_sidecar:
        first = build.init_container(shared)
    else:
        first = build.native_agent(shared)
    inits = list(spec.get("initContainers") or [])
    spec["initContainers"] = [*inits[: targets.insert_at], first, *inits[targets.insert_at :]]
    if not request.init_only and not agent.native_sidecar:
        spec["containers"] = [*(spec.get("containers") or []), build.classic_agent(shared)]


def _warnings(request: InjectRequest, targets: Targets) -> tuple[str, ...]:
    warning = targets.ownership.warning
    warnings = [*targets.warnings, *([warning] if warning and request.files else [])]
    for file in request.files:
        if file.template is not None and file.format is not None:
            warnings.append(
                f"latchkey: {PREFIX}format-{file.name} is ignored: "
                f"{PREFIX}template-{file.name} decides the file's content"
            )
    return tuple(warnings)
