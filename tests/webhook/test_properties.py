"""Properties over generated pods and annotation sets, beyond what a fixture table reaches."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kube import as_pod, validate
from webhook.containers import AGENT, INIT, TOKEN
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.settings import WebhookConfig, load_config

NATIVE = load_config(Path(__file__).parents[1] / "fixtures" / "config.yaml")
CLASSIC = NATIVE.model_copy(
    update={"agent": NATIVE.agent.model_copy(update={"native_sidecar": False})}
)
K = "latchkey.dev/"
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[a-k][a-z0-9]{0,5}", fullmatch=True)
uids = st.sampled_from([None, 0, 1000, 1001])


@st.composite
def containers(draw: st.DrawFn, names: list[str], volumes: list[str]) -> list[dict[str, Any]]:
    result = []
    for name in names:
        container: dict[str, Any] = {"name": name, "image": f"registry.example.com/{name}:1"}
        if draw(st.booleans()):
            container["command"] = ["/bin/" + name]
        if uid := draw(uids):
            container["securityContext"] = {"runAsUser": uid}
        if draw(st.booleans()):
            container["env"] = [{"name": "LOG_LEVEL", "value": "debug"}]
        mounted = draw(st.lists(st.sampled_from(volumes), unique=True)) if volumes else []
        if mounted:
            container["volumeMounts"] = [{"name": v, "mountPath": f"/data/{v}"} for v in mounted]
        result.append(container)
    return result


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    """A pod as the API server would admit it, without any latchkey annotation yet."""
    all_names = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    split = draw(st.integers(min_value=1, max_value=len(all_names)))
    volumes = [f"vol-{i}" for i in range(draw(st.integers(min_value=0, max_value=3)))]
    spec: dict[str, Any] = {"containers": draw(containers(all_names[:split], volumes))}
    inits = draw(containers(all_names[split:], volumes))
    if draw(st.booleans()):
        inits.insert(0, {"name": "istio-init", "image": "docker.io/istio/proxyv2:1.22.3"})
    if inits:
        spec["initContainers"] = inits
    if volumes:
        spec["volumes"] = [{"name": v, "emptyDir": {}} for v in volumes]
    context = {"runAsUser": draw(uids), "fsGroup": draw(st.sampled_from([None, 2000]))}
    if context := {k: v for k, v in context.items() if v is not None}:
        spec["securityContext"] = context
    return {"metadata": {"generateName": "app-", "labels": {"app": "x"}}, "spec": spec}


def _app_names(spec: dict[str, Any], field: str) -> list[str]:
    return [c["name"] for c in spec.get(field, []) if c["name"] != "istio-init"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, str]]:
    """A pod and a valid annotation set for it; the pod is adjusted where the set needs it."""
    pod = draw(pods())
    spec = pod["spec"]
    apps, inits = _app_names(spec, "containers"), _app_names(spec, "initContainers")
    annotations = {K + "inject": "true"}
    selected = apps
    if draw(st.booleans()):
        selected = draw(st.lists(st.sampled_from(apps + inits), min_size=1, unique=True))
        annotations[K + "containers"] = ",".join(selected)
    files = draw(st.lists(st.sampled_from(["db", "tls.crt", "app.env"]), unique=True))
    for name in files:
        annotations[f"{K}secret-{name}"] = f"secret/data/{name}#value"
        annotations[f"{K}format-{name}"] = draw(st.sampled_from(["json", "yaml", "env", "raw"]))
    env = draw(st.lists(st.sampled_from(["DB_PASSWORD", "API_KEY"]), unique=True))
    if not files and not env:
        env = ["TOKEN"]
    for name in env:
        annotations[f"{K}env-{name}"] = "secret/data/app#" + name.lower()
    chosen = [c for f in ("containers", "initContainers") for c in spec.get(f, [])]
    chosen = [c for c in chosen if c["name"] in selected]
    for container in chosen if env else []:
        container.setdefault("command", ["/bin/app"])
    if draw(st.booleans()):
        annotations[K + "init-only"] = "true"
    else:
        left_out = [c for c in spec["containers"] if c["name"] not in selected]
        annotations.update(draw(_on_change(chosen, apps, left_out)))
    annotations[K + "mount-path"] = draw(st.sampled_from(["/latchkey/secrets", "/etc/secrets"]))
    pod["metadata"]["annotations"] = annotations
    return pod, annotations


def _on_change(
    chosen: list[dict[str, Any]], apps: list[str], left_out: list[dict[str, Any]]
) -> st.SearchStrategy[dict[str, str]]:
    """No action, an HTTP one, or a signal with every selected container and the target as
    1000 (and the app containers left out as another uid, as a signal requires)."""

    def signal(target: str) -> dict[str, str]:
        for container in chosen:
            container.setdefault("securityContext", {})["runAsUser"] = 1000
        for container in left_out:
            container.setdefault("securityContext", {})["runAsUser"] = 3000
        return {K + "on-change": f"signal:HUP:{target}"}

    return st.one_of(
        st.just({}),
        st.just({K + "on-change": "http://localhost:8080/-/reload", K + "refresh": "30s"}),
        st.sampled_from([c["name"] for c in chosen if c["name"] in apps] or [""]).map(
            lambda target: signal(target) if target else {}
        ),
    )


def _unique(names: list[str]) -> bool:
    return all(count == 1 for count in Counter(names).values())


@SETTINGS
@given(requests(), st.sampled_from([NATIVE, CLASSIC]))
def test_generated_pods_inject_cleanly(
    request: tuple[dict[str, Any], dict[str, str]], config: WebhookConfig
) -> None:
    pod, _ = request
    original = copy.deepcopy(pod)
    mutation = mutate_pod(pod, namespace="apps", config=config)
    assert mutation.outcome == "injected"
    assert pod == original
    patched = jsonpatch.apply_patch(pod, mutation.patch)
    assert patched == mutation.pod
    spec = patched["spec"]
    every = [*spec.get("initContainers", []), *spec["containers"]]
    assert _unique([c["name"] for c in every])
    assert _unique([v["name"] for v in spec["volumes"]])
    for container in every:
        mounts = container.get("volumeMounts", [])
        assert _unique([m["mountPath"] for m in mounts]), container["name"]
        if container["name"] not in (INIT, AGENT):
            assert TOKEN not in {m["name"] for m in mounts}
    assert validate(as_pod(patched), "1.33") == []
    again = mutate_pod(patched, namespace="apps", config=config)
    assert (again.outcome, again.patch) == ("already-injected", [])


@SETTINGS
@given(requests())
def test_unselected_containers_are_untouched(
    request: tuple[dict[str, Any], dict[str, str]],
) -> None:
    pod, annotations = request
    mutated = mutate_pod(pod, namespace="apps", config=NATIVE).pod
    assert mutated is not None
    selected = annotations.get(K + "containers")
    if selected is None:
        return
    before = {
        c["name"]: c for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]
    }
    after = [*mutated["spec"].get("initContainers", []), *mutated["spec"]["containers"]]
    signalled = annotations.get(K + "on-change", "").rpartition(":")[2]
    for container in after:
        name = container["name"]
        if name in before and name not in selected.split(",") and name != signalled:
            assert container == before[name]


PLAIN_KEYS = ["inject", "store", "role", "containers", "mount-path", "init-only", "refresh",
              "on-change", "agent-cpu", "agent-memory"]  # fmt: skip
PREFIXES = ["secret-", "env-", "format-", "template-", "file-mode-", "secrte-", ""]
annotation_keys = st.one_of(
    st.sampled_from(PLAIN_KEYS),
    st.builds(lambda p, n: p + n, st.sampled_from(PREFIXES), st.text(max_size=12)),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(annotation_keys, st.text(max_size=80), max_size=8), pods())
def test_any_annotations_give_an_answer_or_a_named_denial(
    annotations: dict[str, str], pod: dict[str, Any]
) -> None:
    """Whatever users write, the answer is a patch or a denial naming our annotations,
    never another exception (which would surface as an internal error)."""
    pod["metadata"]["annotations"] = {K + "inject": "true"} | {
        K + k: v for k, v in annotations.items()
    }
    message = ""
    try:
        mutation = mutate_pod(pod, namespace="apps", config=NATIVE)
    except Denied as denial:
        message = str(denial)
    if message:
        assert message.startswith(f"annotation {K}")
        assert len(message) < 8_000
    else:
        assert mutation.outcome in ("injected", "already-injected", "not-requested")
