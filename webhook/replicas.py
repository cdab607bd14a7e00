"""Answers remembered per pod: the pods of one scale-up are one question, asked N times.

The API server runs mutating admission before it resolves ``generateName``, so every
pod a ReplicaSet, a Job or a rollout creates from one template reaches the webhook as
the same JSON, down to the byte; only the review's uid differs. :func:`mutate_pod` is a
pure function of the pod, its namespace and the admin config, which is fixed for the
life of the process, so its answer to one replica is the answer to all of them.

What is kept is what an answer carries (outcome, encoded patch, warnings), keyed by
the namespace and the pod's JSON, least recently used first out, within a byte budget.
A pod whose JSON is over :data:`MAX_KEY` is not kept; denials are not kept either (a
denied pod is not created, and each one is worded afresh).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import msgspec

from webhook.review import dumps, encode_patch

MAX_KEY = 256 * 1024  # a pod's JSON over this is answered afresh every time
BUDGET = 16 * 1024 * 1024  # keys and patches kept, in bytes

Outcome = Literal["injected", "not-requested", "already-injected"]


class Answer(msgspec.Struct, frozen=True):
    """One pod's answer, minus the uid: what :func:`webhook.review.allowed` sends."""

    outcome: Outcome
    patch: str | None  # the JSON patch, base64 as the review carries it
    warnings: tuple[str, ...]
    size: int  # bytes this entry holds, key included


class Replicas:
    """The answers to the pods seen last; ``on_hit`` is called for each one reused."""

    def __init__(
        self, *, budget: int = BUDGET, on_hit: Callable[[], object] = lambda: None
    ) -> None:
        self.budget = budget
        self.held = 0
        self.on_hit = on_hit
        self._answers: OrderedDict[bytes, Answer] = OrderedDict()

    def answer(
        self,
        pod: dict[str, Any],
        namespace: str,
        mutate: Callable[[], tuple[Outcome, list[dict[str, Any]], tuple[str, ...]]],
    ) -> Answer:
        """The answer for ``pod``: remembered, or ``mutate()``'s, kept for the next replica.

        ``mutate`` raises for a pod that is denied; nothing is kept then.
        """
        key = namespace.encode() + b"\0" + dumps(pod)
        found = self._answers.get(key)
        if found is not None:
            self.on_hit()
            self._answers.move_to_end(key)
            return found
        outcome, ops, warnings = mutate()
        patch = encode_patch(ops) if ops else None
        size = len(key) + len(patch or "") + sum(len(w) for w in warnings)
        answer = Answer(outcome=outcome, patch=patch, warnings=warnings, size=size)
        if len(key) <= MAX_KEY:
            self._keep(key, answer)
        return answer

    def _keep(self, key: bytes, answer: Answer) -> None:
        self._answers[key] = answer
        self.held += answer.size
        while self.held > self.budget:
            _, oldest = self._answers.popitem(last=False)
            self.held -= oldest.size
