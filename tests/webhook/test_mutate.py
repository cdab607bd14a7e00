"""The pure core over real AdmissionReview requests: patch, golden pod, schema, idempotency.

Goldens are the whole pod after the patch; ``LATCHKEY_UPDATE_GOLDEN=1`` rewrites
them (and the agent-config schema snapshot) for review in the diff.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonpatch
import msgspec
import pytest

from sidecar.config import CONFIG_ENV, AgentConfig, parse
from tests.kube import VERSIONS, as_pod, validate
from webhook.containers import AGENT, INIT, TOKEN
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.ownership import GROUP_READ, OWNER_ONLY, WORLD_READ
from webhook.settings import WebhookConfig, load_config

FIXTURES = Path(__file__).parents[1] / "fixtures"
UPDATE = os.environ.get("LATCHKEY_UPDATE_GOLDEN") == "1"
OURS = (INIT, AGENT)


def review(name: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((FIXTURES / "reviews" / f"{name}.json").read_text())[
        "request"
    ]
    return request


def matches_golden(path: Path, value: Any) -> bool:
    """Compare with a golden JSON file, rewriting it first when asked to."""
    if UPDATE:
        path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return bool(json.loads(path.read_text(encoding="utf-8")) == value)


@pytest.fixture(scope="module")
def configs() -> dict[str, WebhookConfig]:
    native = load_config(FIXTURES / "config.yaml")
    agent = native.agent.model_copy(update={"native_sidecar": False})
    return {"native": native, "classic": native.model_copy(update={"agent": agent})}


def all_containers(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


GOLDEN = [
    pytest.param("deployment-native", "native", 0, id="deployment-native"),
    pytest.param("deployment-classic-fsgroup", "classic", 0, id="deployment-classic-fsgroup"),
    pytest.param("job-init-only", "native", 0, id="job-init-only"),
    pytest.param("cronjob-init-only-classic", "classic", 0, id="cronjob-init-only-classic"),
    pytest.param("env-distroless", "native", 0, id="env-distroless"),
    pytest.param("env-init-container-classic", "classic", 0, id="env-init-container-classic"),
    pytest.param("on-change-signal", "native", 0, id="on-change-signal"),
    pytest.param("on-change-http", "native", 0, id="on-change-http"),
    pytest.param("istio-classic-sidecar", "classic", 1, id="istio-classic-sidecar"),
    pytest.param("linkerd-native-proxy", "native", 0, id="linkerd-native-proxy"),
    pytest.param("restricted-no-automount", "native", 0, id="restricted-no-automount"),
    pytest.param("formats-and-modes", "native", 1, id="formats-and-modes"),
    pytest.param("aws-store", "native", 0, id="aws-store"),
    pytest.param("gcp-store", "native", 0, id="gcp-store"),
    pytest.param("azure-store", "native", 0, id="azure-store"),
    pytest.param("unknown-uid-warning", "native", 1, id="unknown-uid-warning"),
    pytest.param("daemonset-init-selected", "native", 0, id="daemonset-init-selected"),
]


@pytest.mark.parametrize(("name", "mode", "warnings"), GOLDEN)
def test_review_gives_the_golden_pod(
    name: str, mode: str, warnings: int, configs: dict[str, WebhookConfig]
) -> None:
    request = review(name)
    pod = request["object"]
    untouched = copy.deepcopy(pod)
    mutation = mutate_pod(pod, namespace=request["namespace"], config=configs[mode])
    assert pod == untouched, "the input pod must not be modified"
    assert mutation.outcome == "injected"
    json.dumps(mutation.patch)  # the patch travels as JSON
    patched = jsonpatch.apply_patch(pod, mutation.patch)
    assert patched == mutation.pod
    assert matches_golden(FIXTURES / "golden" / f"{name}.json", patched)
    assert len(mutation.warnings) == warnings, mutation.warnings
    for version in VERSIONS:
        assert validate(patched, version) == [], version
    again = mutate_pod(patched, namespace=request["namespace"], config=configs[mode])
    assert (again.outcome, again.patch) == ("already-injected", [])


@pytest.mark.parametrize(("name", "mode", "warnings"), GOLDEN)
def test_golden_pod_keeps_the_token_from_the_app(
    name: str, mode: str, warnings: int, configs: dict[str, WebhookConfig]
) -> None:
    golden = json.loads((FIXTURES / "golden" / f"{name}.json").read_text())
    for container in all_containers(golden):
        mounts = {m["name"] for m in container.get("volumeMounts", [])}
        assert (TOKEN in mounts) == (container["name"] in OURS), container["name"]
        if container["name"] in OURS:
            env = {e["name"]: e["value"] for e in container["env"]}
            config = parse(AgentConfig, json.loads(env[CONFIG_ENV]))
            assert config.store in configs[mode].stores.values()


@pytest.mark.parametrize(
    ("name", "mode", "inits", "sidecars"),
    [
        pytest.param("deployment-native", "native", [AGENT], [], id="native"),
        pytest.param("deployment-native", "classic", [INIT], [AGENT], id="classic"),
        pytest.param("job-init-only", "native", [INIT], [], id="init-only-native"),
        pytest.param("cronjob-init-only-classic", "classic", [INIT], [], id="init-only-classic"),
        pytest.param(
            "istio-classic-sidecar", "native", ["istio-init", AGENT], [], id="after-istio-init"
        ),
        pytest.param(
            "linkerd-native-proxy",
            "classic",
            ["linkerd-network-validator", "linkerd-proxy", INIT],
            [AGENT],
            id="after-linkerd-proxy",
        ),
        pytest.param(
            "daemonset-init-selected", "native", [AGENT, "render-config"], [], id="before-own-init"
        ),
    ],
)
def test_agent_containers_by_mode(
    name: str, mode: str, inits: list[str], sidecars: list[str], configs: dict[str, WebhookConfig]
) -> None:
    request = review(name)
    pod = mutate_pod(request["object"], namespace="apps", config=configs[mode]).pod
    assert pod is not None
    spec = pod["spec"]
    assert [c["name"] for c in spec["initContainers"]][: len(inits)] == inits
    assert [c["name"] for c in spec["containers"] if c["name"] in OURS] == sidecars
    native = [c for c in spec["initContainers"] if c.get("restartPolicy") == "Always"]
    assert (AGENT in [c["name"] for c in native]) == (mode == "native" and INIT not in inits)


def annotated(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    """A small pod template that opts in with ``annotations``."""
    containers = spec.pop("containers", [{"name": "app", "image": "app:1", "command": ["/app"]}])
    return {
        "metadata": {"annotations": {"latchkey.dev/inject": "true", **annotations}},
        "spec": {"containers": containers, **spec},
    }


DB = {"latchkey.dev/secret-db": "secret/data/db"}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        pytest.param(
            {"latchkey.dev/secret-db": "x"},
            "annotation latchkey.dev/inject: missing: the pod has latchkey.dev/ annotations "
            '(secret-db) but does not opt in; add latchkey.dev/inject: "true", or remove them',
            id="secrets-without-inject",
        ),
        pytest.param(
            {"latchkey.dev/injekt": "true", **DB},
            "annotation latchkey.dev/injekt: unknown annotation; did you mean latchkey.dev/inject?",
            id="misspelt-inject",
        ),
        pytest.param(
            {"latchkey.dev/inject": "True", **DB},
            'annotation latchkey.dev/inject: "True" is not a boolean: use "true" or "false"',
            id="capitalised-true",
        ),
    ],
)
def test_pods_that_meant_to_opt_in_are_denied_not_ignored(
    annotations: dict[str, str], message: str, configs: dict[str, WebhookConfig]
) -> None:
    """The matchConditions send every pod with an annotation of ours (tests/deploy)."""
    pod = {"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "a"}]}}
    with pytest.raises(Denied) as denied:
        mutate_pod(pod, namespace="shop", config=configs["native"])
    assert message in str(denied.value)


def test_an_explicit_opt_out_is_allowed_and_says_what_it_ignores(
    configs: dict[str, WebhookConfig],
) -> None:
    annotations = {"latchkey.dev/inject": "false", **DB}
    pod = {"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "a"}]}}
    mutation = mutate_pod(pod, namespace="shop", config=configs["native"])
    assert (mutation.outcome, mutation.patch) == ("not-requested", [])
    assert mutation.warnings == (
        'latchkey: latchkey.dev/inject is "false", so secret-db is ignored and the pod gets '
        "no secrets",
    )


@pytest.mark.parametrize(
    ("annotations", "outcome"),
    [
        pytest.param({}, "not-requested", id="no-annotations"),
        pytest.param({"latchkey.dev/inject": "false"}, "not-requested", id="inject-false"),
        pytest.param(
            {
                "latchkey.dev/inject": "false",
                "latchkey.dev/bogus": "x",
                "latchkey.dev/refresh": "0",
            },
            "not-requested",
            id="inject-false-ignores-invalid",
        ),
        pytest.param(
            {"latchkey.dev/inject": "true", "latchkey.dev/status": "injected", **DB},
            "already-injected",
            id="status-present",
        ),
    ],
)
def test_pods_left_alone(
    annotations: dict[str, str], outcome: str, configs: dict[str, WebhookConfig]
) -> None:
    pod = {"metadata": {"annotations": annotations}, "spec": {"containers": [{"name": "a"}]}}
    mutation = mutate_pod(pod, namespace="kube-system", config=configs["native"])
    assert (mutation.outcome, mutation.patch, mutation.pod) == (outcome, [], None)


def test_pod_template_without_name_or_namespace(configs: dict[str, WebhookConfig]) -> None:
    template = annotated(DB)
    mutation = mutate_pod(template, namespace="default", config=configs["native"])
    assert mutation.pod is not None
    assert jsonpatch.apply_patch(template, mutation.patch) == mutation.pod
    assert "apiVersion" not in mutation.pod
    assert validate(as_pod(mutation.pod), "1.33") == []


def test_validator_rejects_an_invalid_pod() -> None:
    pod = as_pod({"metadata": {"generateName": "a-"}, "spec": {"containers": [{"name": "a"}]}})
    assert validate(pod, "1.33") == []
    pod["spec"]["containers"][0]["mountPath"] = "/x"
    assert validate(pod, "1.33") == [
        "spec.containers.0: Additional properties are not allowed ('mountPath' was unexpected)"
    ]


def agent_of(pod: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in all_containers(pod) if c["name"] in OURS)


def files_mode(pod: Mapping[str, Any]) -> int:
    env = {e["name"]: e["value"] for e in agent_of(pod)["env"]}
    return parse(AgentConfig, json.loads(env[CONFIG_ENV])).files[0].mode


def app(name: str, uid: int | None = None, gid: int | None = None) -> dict[str, Any]:
    context = {k: v for k, v in (("runAsUser", uid), ("runAsGroup", gid)) if v is not None}
    return {"name": name, "image": "app:1", "securityContext": context}


@pytest.mark.parametrize(
    ("pod_context", "containers", "user", "group", "mode"),
    [
        pytest.param({"runAsUser": 1000}, [app("a")], 1000, 1000, OWNER_ONLY, id="pod-uid"),
        pytest.param({}, [app("a", 7, 8), app("b", 7)], 7, 8, OWNER_ONLY, id="container-uid-gid"),
        pytest.param(
            {"runAsUser": 5, "runAsGroup": 6}, [app("a"), app("b", 5)], 5, 6, OWNER_ONLY,
            id="pod-and-container-agree",
        ),
        pytest.param(
            {"fsGroup": 3000}, [app("a", 1), app("b", 2)], 65532, 3000, GROUP_READ,
            id="two-uids-fsgroup",
        ),
        pytest.param({"fsGroup": 9}, [app("a", 0)], 65532, 9, GROUP_READ, id="root-is-unknown"),
        pytest.param({}, [app("a", 1), app("b")], 65532, 65532, WORLD_READ, id="one-uid-unknown"),
        pytest.param({"runAsUser": 0}, [app("a")], 65532, 65532, WORLD_READ, id="root-pod"),
    ],
)  # fmt: skip
def test_file_ownership(
    pod_context: dict[str, Any],
    containers: list[dict[str, Any]],
    user: int,
    group: int,
    mode: int,
    configs: dict[str, WebhookConfig],
) -> None:
    pod = annotated(DB, containers=containers, securityContext=pod_context)
    mutation = mutate_pod(pod, namespace="apps", config=configs["native"])
    assert mutation.pod is not None
    context = agent_of(mutation.pod)["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"], files_mode(mutation.pod)) == (
        user,
        group,
        mode,
    )
    assert bool(mutation.warnings) == (mode == WORLD_READ)


def test_file_mode_annotation_wins(configs: dict[str, WebhookConfig]) -> None:
    pod = annotated({**DB, "latchkey.dev/file-mode-db": "0440"}, securityContext={"runAsUser": 1})
    mutation = mutate_pod(pod, namespace="apps", config=configs["native"])
    assert mutation.pod is not None
    assert files_mode(mutation.pod) == 0o440


@pytest.mark.parametrize(
    ("annotations", "requests", "limits"),
    [
        pytest.param({}, {"cpu": "10m", "memory": "24Mi"}, {"memory": "64Mi"}, id="config"),
        pytest.param(
            {"latchkey.dev/agent-cpu": "200m"}, {"cpu": "200m", "memory": "24Mi"},
            {"memory": "64Mi"}, id="cpu",
        ),
        pytest.param(
            {"latchkey.dev/agent-memory": "100Mi"}, {"cpu": "10m", "memory": "100Mi"},
            {"memory": "100Mi"}, id="memory",
        ),
    ],
)  # fmt: skip
def test_agent_resources(
    annotations: dict[str, str],
    requests: dict[str, str],
    limits: dict[str, str],
    configs: dict[str, WebhookConfig],
) -> None:
    pod = mutate_pod(annotated({**DB, **annotations}), namespace="a", config=configs["native"]).pod
    assert pod is not None
    assert agent_of(pod)["resources"] == {"requests": requests, "limits": limits}


def test_agent_config_schema_snapshot() -> None:
    """Contract changes between webhook and agent show up in review as a schema diff."""
    schema = json.loads(msgspec.json.encode(msgspec.json.schema(AgentConfig)))
    assert matches_golden(FIXTURES / "agent-config.schema.json", schema)
