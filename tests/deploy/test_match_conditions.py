"""The webhook's matchConditions, evaluated with a real CEL implementation (cel-python).

``failurePolicy: Fail`` is only safe because these conditions keep every pod without
an annotation of ours away from the webhook: this is the line between "annotated pods
wait for Latchkey" and "no pod in the cluster can start while Latchkey is down". Every
pod with one is sent, so a bad value is denied by name instead of ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.deploy.tools import by_kind

INJECT = "latchkey.dev/inject"
Matcher = Callable[[dict[str, Any]], bool]


@pytest.fixture(scope="module")
def matches(rendered: dict[str, list[dict[str, Any]]]) -> Matcher:
    """Whether the API server would send a pod to the webhook (all conditions true)."""
    (webhook,) = by_kind(rendered["cert-manager"], "MutatingWebhookConfiguration")["webhooks"]
    env = celpy.Environment()
    programs = [env.program(env.compile(c["expression"])) for c in webhook["matchConditions"]]

    def evaluate(pod: dict[str, Any]) -> bool:
        cel_pod = celpy.json_to_cel(pod)  # type: ignore[attr-defined]
        activation = {"object": cel_pod, "oldObject": None}
        results = [program.evaluate(activation) for program in programs]
        assert all(isinstance(r, celpy.celtypes.BoolType) for r in results), results
        return all(bool(r) for r in results)

    return evaluate


def _pod(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
    }


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param({"annotations": {INJECT: "true"}}, True, id="opted-in"),
        pytest.param(
            {"generateName": "web-", "annotations": {INJECT: "true", "other": "x"}},
            True,
            id="opted-in-with-others",
        ),
        # Sent so that the webhook denies them by name: they must not start silently.
        pytest.param({"annotations": {INJECT: "True"}}, True, id="capitalised-true"),
        pytest.param({"annotations": {INJECT: "yes"}}, True, id="yes"),
        pytest.param({"annotations": {INJECT: ""}}, True, id="empty-value"),
        pytest.param({"annotations": {"latchkey.dev/injekt": "true"}}, True, id="misspelt-key"),
        pytest.param(
            {"annotations": {"prometheus.io/scrape": "true", "latchkey.dev/secret-db": "kv/db"}},
            True,
            id="secret-without-inject",
        ),
        pytest.param({"annotations": {INJECT: "false"}}, True, id="opted-out"),
        # Never sent: no annotation of ours at all.
        pytest.param({"name": "web"}, False, id="no-annotations-at-all"),
        pytest.param({"annotations": {}}, False, id="empty-annotations"),
        pytest.param({"annotations": {"prometheus.io/scrape": "true"}}, False, id="others-only"),
        pytest.param({"annotations": {"xlatchkey.dev/inject": "true"}}, False, id="other-domain"),
        pytest.param({"labels": {INJECT: "true"}}, False, id="label-not-annotation"),
    ],
)
def test_every_latchkey_annotated_pod_reaches_the_webhook(
    matches: Matcher, metadata: dict[str, Any], expected: bool
) -> None:
    assert matches(_pod(metadata)) is expected


@given(
    st.dictionaries(
        st.sampled_from([INJECT, "latchkey.dev/status", "app", "latchkey.dev/injectx"])
        | st.text(min_size=1, max_size=20),
        st.sampled_from(["true", "false", "TRUE", " true", ""]) | st.text(max_size=8),
        max_size=6,
    )
)
def test_condition_is_exactly_an_annotation_under_our_prefix(
    matches: Matcher, annotations: dict[str, str]
) -> None:
    ours = any(key.startswith("latchkey.dev/") for key in annotations)
    assert matches(_pod({"annotations": annotations})) is ours


# --- latchkey-guard: updates of injected pods ------------------------------------------

STATUS = "latchkey.dev/status"
GuardMatcher = Callable[[str, dict[str, Any], dict[str, Any]], bool]


@pytest.fixture(scope="module")
def guard_matches(rendered: dict[str, list[dict[str, Any]]]) -> GuardMatcher:
    """Whether the API server would send this update to the named guard webhook."""
    config = by_kind(rendered["cert-manager"], "ValidatingWebhookConfiguration")
    env = celpy.Environment()
    programs = {
        hook["name"]: [env.program(env.compile(c["expression"])) for c in hook["matchConditions"]]
        for hook in config["webhooks"]
    }

    def evaluate(name: str, pod: dict[str, Any], old: dict[str, Any]) -> bool:
        activation = {"object": celpy.json_to_cel(pod), "oldObject": celpy.json_to_cel(old)}  # type: ignore[attr-defined]
        results = [program.evaluate(activation) for program in programs[name]]
        assert all(isinstance(r, celpy.celtypes.BoolType) for r in results), results
        return all(bool(r) for r in results)

    return evaluate


def _injected(
    agent_image: str = "latchkey-sidecar:0.1.0",
    *,
    app_image: str = "app:1",
    status: str | None = "injected",
    classic: bool = False,
) -> dict[str, Any]:
    agent = {"name": "latchkey-agent", "image": agent_image}
    init = {"name": "latchkey-init", "image": agent_image}
    annotations = {STATUS: status} if status else {"other": "x"}
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": app_image}]}
    if classic:
        spec |= {"initContainers": [init], "containers": [*spec["containers"], agent]}
    else:
        spec["initContainers"] = [agent]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"annotations": annotations},
            "spec": spec}  # fmt: skip


@pytest.mark.parametrize(
    ("hook", "pod", "old", "expected"),
    [
        pytest.param(
            "debug.guard.latchkey.dev", _injected(), _injected(), True, id="debug-injected"
        ),
        pytest.param(
            "debug.guard.latchkey.dev",
            _injected(status=None),
            _injected(status=None),
            False,
            id="debug-not-injected",
        ),
        pytest.param(
            "images.guard.latchkey.dev",
            _injected("evil:1"),
            _injected(),
            True,
            id="native-agent-image-changed",
        ),
        pytest.param(
            "images.guard.latchkey.dev",
            _injected("evil:1", classic=True),
            _injected(classic=True),
            True,
            id="classic-agent-image-changed",
        ),
        pytest.param(
            "images.guard.latchkey.dev",
            _injected(app_image="app:2"),
            _injected(),
            False,
            id="app-image-changed",
        ),
        pytest.param(
            "images.guard.latchkey.dev", _injected(), _injected(), False, id="labels-only-update"
        ),
        pytest.param(
            "images.guard.latchkey.dev",
            _injected("evil:1", status=None),
            _injected(status=None),
            False,
            id="not-injected",
        ),
    ],
)
def test_only_updates_that_matter_reach_the_guard(
    guard_matches: GuardMatcher, hook: str, pod: dict[str, Any], old: dict[str, Any],
    expected: bool,
) -> None:  # fmt: skip
    assert guard_matches(hook, pod, old) is expected


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        pytest.param({INJECT: "yes", "latchkey.dev/secret-db": "secret/data/db"},
                     '"yes" is not a boolean', id="yes"),
        pytest.param({INJECT: "True", "latchkey.dev/secret-db": "secret/data/db"},
                     '"True" is not a boolean', id="capitalised-true"),
        pytest.param({"latchkey.dev/injekt": "true", "latchkey.dev/secret-db": "secret/data/db"},
                     "did you mean latchkey.dev/inject?", id="misspelt-key"),
    ],
)  # fmt: skip
def test_a_bad_opt_in_is_sent_by_the_shipped_conditions_and_denied(
    matches: Matcher, annotations: dict[str, str], message: str
) -> None:
    """The cluster path end to end: the manifests' CEL sends it, the webhook denies it."""
    from webhook.errors import Denied
    from webhook.mutate import mutate_pod
    from webhook.settings import load_config

    pod = _pod({"annotations": annotations})
    assert matches(pod)
    config = load_config(Path(__file__).parents[1] / "fixtures" / "config.yaml")
    with pytest.raises(Denied, match=re.escape(message)):
        mutate_pod(pod, namespace="shop", config=config)
