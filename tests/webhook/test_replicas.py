"""The answers kept for identical pods: reused only for the very same pod in the same
namespace, never for a denial, and within their byte budget, least recently used out."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.errors import Denied
from webhook.replicas import MAX_KEY, Outcome, Replicas

Ops = list[dict[str, Any]]
INJECTED: tuple[Outcome, Ops, tuple[str, ...]] = (
    "injected",
    [{"op": "add", "path": "/metadata/annotations/latchkey.dev~1status", "value": "injected"}],
    ("a warning",),
)


class Mutate:
    """A stand-in for the pure core that counts its calls and answers per pod."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pod: dict[str, Any]) -> tuple[Outcome, Ops, tuple[str, ...]]:
        self.calls += 1
        if pod.get("deny"):
            raise Denied("latchkey.dev/refresh: not a duration")
        outcome, ops, warnings = INJECTED
        return outcome, [*ops, {"op": "add", "path": "/x", "value": pod["name"]}], warnings


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


def test_a_pod_over_the_key_limit_is_answered_but_not_kept() -> None:
    replicas, mutate = Replicas(), Mutate()
    big = {"name": "x" * MAX_KEY}
    first = ask(replicas, mutate, big)
    second = ask(replicas, mutate, big)
    assert second == first
    assert (mutate.calls, replicas.held) == (2, 0)
