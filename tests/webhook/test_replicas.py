"""The answers kept for identical pods: reused only for the very same pod in the same
namespace, never for a denial, and within their byte budget, least recently used out."""

from __future__ import annotations

import functools
import json
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.errors import Denied
from webhook.mutate import Mutation, mutate_pod
from webhook.replicas import MARK, MAX_KEY, TOKEN_VOLUME, Answer, Replicas, _token_volume
from webhook.settings import WebhookConfig, load_config

STATUS = {"op": "add", "path": "/metadata/annotations/latchkey.dev~1status", "value": "injected"}


class Mutate:
    """A stand-in for the pure core that counts its calls and answers per pod."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pod: dict[str, Any]) -> Mutation:
        self.calls += 1
        if pod.get("deny"):
            raise Denied("latchkey.dev/refresh: not a duration")
        ops = [STATUS, {"op": "add", "path": "/x", "value": pod["name"]}]
        return Mutation("injected", ops, ("a warning",))


def ask(replicas: Replicas, mutate: Mutate, pod: dict[str, Any], namespace: str = "shop") -> Any:
    return replicas.answer(pod, namespace, lambda: mutate(pod))


def test_an_identical_pod_reuses_the_answer() -> None:
    hits: list[None] = []
    replicas, mutate = Replicas(on_hit=lambda: hits.append(None)), Mutate()
    first = ask(replicas, mutate, {"name": "web"})
    second = ask(replicas, mutate, {"name": "web"})
    assert (mutate.calls, len(hits)) == (1, 1)
    assert second == first
    assert (first.outcome, first.warnings) == ("injected", ("a warning",))
    assert first.patch is not None


BASE = {"name": "web", "team": "a"}


@pytest.mark.parametrize(
    ("other", "namespace"),
    [
        pytest.param({"name": "api", "team": "a"}, "shop", id="another-value"),
        pytest.param({**BASE, "extra": 1}, "shop", id="another-field"),
        pytest.param(BASE, "bank", id="another-namespace"),
        # The same pod to Kubernetes, but not the same JSON: not assumed to be equal.
        pytest.param({"team": "a", "name": "web"}, "shop", id="fields-in-another-order"),
    ],
)
def test_any_difference_is_worked_out_afresh(other: dict[str, Any], namespace: str) -> None:
    replicas, mutate = Replicas(), Mutate()
    ask(replicas, mutate, dict(BASE))
    ask(replicas, mutate, other, namespace)
    assert mutate.calls == 2


def test_a_denial_is_not_kept() -> None:
    replicas, mutate = Replicas(), Mutate()
    for _ in range(2):
        with pytest.raises(Denied):
            ask(replicas, mutate, {"name": "web", "deny": True})
    assert mutate.calls == 2
    assert replicas.held == 0


def test_answers_stay_within_the_budget_least_recently_used_out() -> None:
    one = Replicas()
    ask(one, Mutate(), {"name": "p0"})
    size = one.held
    replicas, mutate = Replicas(budget=3 * size), Mutate()
    for name in ("p0", "p1", "p2"):
        ask(replicas, mutate, {"name": name})
    ask(replicas, mutate, {"name": "p0"})  # p0 used again: p1 is now the oldest
    ask(replicas, mutate, {"name": "p3"})
    assert replicas.held <= replicas.budget
    calls = mutate.calls
    ask(replicas, mutate, {"name": "p0"})
    ask(replicas, mutate, {"name": "p3"})
    assert mutate.calls == calls
    ask(replicas, mutate, {"name": "p1"})
    assert mutate.calls == calls + 1


def test_what_is_kept_costs_the_memory_it_counts(config: WebhookConfig) -> None:
    """The budget is in bytes the process really holds (orjson's output carries a
    buffer several times its length; kept as it is, 8 MiB counted would be ~20)."""
    request = json.loads((FIXTURES / "reviews" / "deployment-native.json").read_text())["request"]
    pods = [replica(request["object"], "bcdfg", datetime(2026, 1, 1)) for _ in range(200)]
    for n, pod in enumerate(pods):
        pod["metadata"]["labels"]["pod-template-hash"] = f"{n:010d}"  # 200 templates
    replicas = Replicas()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for pod in pods:
            replicas.answer(pod, "shop", core(pod, "shop", config))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert replicas.held > 200 * 2000
    assert held < 1.3 * replicas.held, (held, replicas.held)


def test_a_pod_over_the_key_limit_is_answered_but_not_kept() -> None:
    replicas, mutate = Replicas(), Mutate()
    big = {"name": "x" * MAX_KEY}
    first = ask(replicas, mutate, big)
    second = ask(replicas, mutate, big)
    assert second == first
    assert (mutate.calls, replicas.held) == (2, 0)


# --- the claims the key rests on, against the real core and every pod fixture ---------

FIXTURES = Path(__file__).parents[1] / "fixtures"
REVIEWS = sorted((FIXTURES / "reviews").glob("*.json"))
SUFFIX = st.text(alphabet="bcdfghjklmnpqrstvwxz2456789", min_size=5, max_size=5)
SECOND = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))


@pytest.fixture(scope="module")
def config() -> WebhookConfig:
    return load_config(FIXTURES / "config.yaml")


def replica(pod: dict[str, Any], suffix: str, created: datetime) -> dict[str, Any]:
    """Another pod of the same template, as the API server sends it: its own token
    volume and its own managedFields time."""
    text = json.dumps(pod)
    for name in {v["name"] for v in pod["spec"].get("volumes", [])}:
        if TOKEN_VOLUME.fullmatch(name):
            text = text.replace(name, f"kube-api-access-{suffix}")
    other: dict[str, Any] = json.loads(text)
    for entry in other["metadata"].get("managedFields", []):
        entry["time"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return other


def fresh(pod: dict[str, Any], namespace: str, config: WebhookConfig) -> Answer:
    """What the webhook answers without anything kept."""
    return Replicas(budget=0).answer(pod, namespace, core(pod, namespace, config))


def core(pod: dict[str, Any], namespace: str, config: WebhookConfig) -> Callable[[], Mutation]:
    return functools.partial(mutate_pod, pod, namespace=namespace, config=config)


@pytest.mark.parametrize("path", REVIEWS, ids=[p.stem for p in REVIEWS])
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(suffix=SUFFIX, created=SECOND)
def test_a_replica_gets_the_answer_worked_out_for_it(
    path: Path, suffix: str, created: datetime, config: WebhookConfig
) -> None:
    request = json.loads(path.read_text())["request"]
    pod, namespace = request["object"], request["namespace"]
    other = replica(pod, suffix, created)
    replicas, hits = Replicas(on_hit=lambda: hits.append(None)), []  # type: ignore[var-annotated]
    replicas.answer(pod, namespace, core(pod, namespace, config))
    reused = replicas.answer(other, namespace, core(other, namespace, config))
    assert hits == [None], "a replica must be recognised"
    assert reused == fresh(other, namespace, config)


def test_each_fixture_has_one_token_volume_to_stand_in_for() -> None:
    """So the property above renames something in most fixtures, as a cluster would."""
    named = [
        p.stem for p in REVIEWS if _token_volume(json.loads(p.read_text())["request"]["object"])
    ]
    assert len(named) >= len(REVIEWS) - 2, named


def test_a_pod_that_holds_the_mark_itself_is_not_kept() -> None:
    replicas, mutate = Replicas(), Mutate()
    pod = {"name": "web", "note": MARK}
    assert ask(replicas, mutate, pod) == ask(replicas, mutate, pod)
    assert (mutate.calls, replicas.held) == (2, 0)
