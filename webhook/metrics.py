"""The webhook's Prometheus metrics, on a registry owned by one app instance.

Not the global default registry: two apps in one process (the tests) must not
share counters. Label values are bounded: a denial is labelled with the
annotation's family (``secret-*``), never with a user-chosen name, and an
operation the API server never sends is ``other``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from webhook.annotations import PER_NAME, PLAIN
from webhook.errors import AnnotationError, AnnotationErrors, Denied
from webhook.problems import PREFIX

# The operations the API server sends; a request can carry any string there.
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def _family(annotation: str) -> str:
    name = annotation.removeprefix(PREFIX)
    if name in PLAIN:
        return PREFIX + name
    for family in PER_NAME:
        if name.startswith(family):
            return f"{PREFIX}{family}*"
    return "unknown-annotation"


def operation(value: str) -> str:
    """The request's operation as a label: anything but the four real ones is ``other``."""
    return value if value in OPERATIONS else "other"


def denial_reasons(exc: Denied) -> tuple[str, ...]:
    """Bounded labels for a denial: each annotation family at fault, else the error's kind."""
    if isinstance(exc, AnnotationErrors):
        return tuple(sorted({_family(error.annotation) for error in exc.errors}))
    if isinstance(exc, AnnotationError):
        return (_family(exc.annotation),)
    return (type(exc).__name__,)


class Metrics:
    """Counters the routes move; ``render`` is the ``/metrics`` body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reviews = Counter(
            "latchkey_webhook_reviews",
            "Admission reviews answered, by operation and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.injections = Counter(
            "latchkey_webhook_injections",
            "Pods the agent was injected into (dry runs excluded).",
            registry=self.registry,
        )
        self.denials = Counter(
            "latchkey_webhook_denials",
            "Pods refused, by reason: each annotation family at fault, or the error kind.",
            ["reason"],
            registry=self.registry,
        )
        self.guard_denials = Counter(
            "latchkey_webhook_guard_denials",
            "Updates of injected pods refused by the guard, by rule "
            "(debug-agent-volume, debug-secrets, debug-ptrace, agent-image).",
            ["rule"],
            registry=self.registry,
        )
        self.not_injected = Counter(
            "latchkey_webhook_annotated_not_injected",
            "Pods that opted in but got no injection, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.replica_answers = Counter(
            "latchkey_webhook_replica_answers",
            "Injections answered with the patch already worked out for an identical pod "
            "(the replicas of one scale-up, rollout or Job).",
            registry=self.registry,
        )
        self.latency = Histogram(
            "latchkey_webhook_review_duration_seconds",
            "Time to answer one admission review, body read included.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric above."""
        return generate_latest(self.registry)
