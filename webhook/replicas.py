"""Answers remembered per pod: the pods of one scale-up are one question, asked N times.

The API server runs mutating admission before it resolves ``generateName``, so the
pods a ReplicaSet, a Job or a rollout creates from one template reach the webhook
alike but for two fields, set by the API server itself before any webhook:

- the service-account token volume, ``kube-api-access-`` and five random characters,
  named in ``spec.volumes`` and in every container's ``volumeMounts``;
- ``metadata.managedFields``, whose ``time`` is the second the pod was created.

:func:`webhook.mutate.mutate_pod` is a pure function of the pod, its namespace and the
admin config, which is fixed for the life of the process. It never reads
``managedFields``, and it treats the token volume's name as an opaque string (the
patch names it only where it copies it). So the key is the namespace and the pod's
JSON without ``managedFields`` and with the token volume's name replaced by
:data:`MARK`; the patch is kept with :data:`MARK` where that name was, and each
replica gets it back with its own name. ``tests/webhook/test_replicas.py`` checks both
claims against every pod fixture.

Kept: what an answer carries (outcome, patch, warnings), least recently used first
out, within a byte budget. Not kept: a pod whose JSON is over :data:`MAX_KEY`, one
that already holds :data:`MARK`, and denials (a denied pod is not created, and each
is worded afresh).
"""

from __future__ import annotations

import base64
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from webhook.mutate import Mutation, Outcome
from webhook.review import dumps

MAX_KEY = 256 * 1024  # a pod's JSON over this is answered afresh every time
BUDGET = 8 * 1024 * 1024  # keys and patches kept, in bytes: ~1,900 pods like the bench's
# The ServiceAccount admission plugin's volume: the prefix and 5 random [a-z0-9].
TOKEN_VOLUME = re.compile(r"kube-api-access-[a-z0-9]{5}")
# Stands for that name in keys and kept patches: as long, and no volume name (dots).
MARK = "kube-api-access-....."
_MARK = MARK.encode()


class Answer(msgspec.Struct, frozen=True):
    """One pod's answer, minus the uid: what :func:`webhook.review.allowed` sends."""

    outcome: Outcome
    patch: str | None  # the JSON patch, base64 as the review carries it
    warnings: tuple[str, ...]


class _Kept(msgspec.Struct, frozen=True):
    """An answer as kept: the patch's JSON and the warnings hold :data:`MARK`."""

    outcome: Outcome
    patch: bytes
    warnings: tuple[str, ...]
    size: int  # bytes this entry holds, key included


class Replicas:
    """The answers to the pods seen last; ``on_hit`` is called for each one reused."""

    def __init__(self, *, budget: int = BUDGET, on_hit: Callable[[], object] = lambda: None):
        self.budget = budget
        self.held = 0
        self.on_hit = on_hit
        self._kept: OrderedDict[bytes, _Kept] = OrderedDict()

    def answer(
        self, pod: Mapping[str, Any], namespace: str, mutate: Callable[[], Mutation]
    ) -> Answer:
        """The answer for ``pod``: kept from a replica, or ``mutate()``'s, then kept.

        ``mutate`` raises for a pod that is denied; nothing is kept then.
        """
        key, volume = _key(pod, namespace)
        kept = self._kept.get(key) if key is not None else None
        if kept is not None:
            self.on_hit()
            self._kept.move_to_end(key)  # type: ignore[arg-type]
            return _restored(kept, volume)
        mutation = mutate()
        patch = dumps(mutation.patch) if mutation.patch else b""
        if key is not None:
            self._keep(key, mutation.outcome, patch, mutation.warnings, volume)
        return Answer(mutation.outcome, _encoded(patch) if patch else None, mutation.warnings)

    def _keep(
        self, key: bytes, outcome: Outcome, patch: bytes, warnings: tuple[str, ...], volume: str
    ) -> None:
        if _MARK in patch or any(MARK in w for w in warnings):
            return  # the admin config writes MARK itself: it could not be told apart
        if volume:
            patch = patch.replace(volume.encode(), _MARK)
            warnings = tuple(w.replace(volume, MARK) for w in warnings)
        patch = bytes(memoryview(patch))  # orjson's bytes hold ~8 KiB of buffer for 2 KiB
        size = len(key) + len(patch) + sum(len(w) for w in warnings)
        self._kept[key] = _Kept(outcome, patch, warnings, size)
        self.held += size
        while self.held > self.budget:
            _, oldest = self._kept.popitem(last=False)
            self.held -= oldest.size


def _key(pod: Mapping[str, Any], namespace: str) -> tuple[bytes | None, str]:
    """The key of ``pod`` (None: not to be kept) and its token volume's name, if any."""
    metadata = pod.get("metadata")
    if isinstance(metadata, Mapping) and "managedFields" in metadata:
        pod = {**pod, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    data = dumps(pod)
    if len(data) > MAX_KEY or _MARK in data:
        return None, ""
    volume = _token_volume(pod)
    if volume:
        data = data.replace(volume.encode(), _MARK)
    return namespace.encode() + b"\0" + data, volume


def _token_volume(pod: Mapping[str, Any]) -> str:
    """The name of the one volume the ServiceAccount admission plugin added, or ""."""
    spec = pod.get("spec")
    volumes = spec.get("volumes") if isinstance(spec, Mapping) else None
    if not isinstance(volumes, list):
        return ""
    names = [
        v["name"]
        for v in volumes
        if isinstance(v, Mapping)
        and isinstance(v.get("name"), str)
        and TOKEN_VOLUME.fullmatch(v["name"])
    ]
    return names[0] if len(names) == 1 else ""


def _restored(kept: _Kept, volume: str) -> Answer:
    """A kept answer with this replica's token volume where :data:`MARK` stands."""
    patch, warnings = kept.patch, kept.warnings
    if volume:
        patch = patch.replace(_MARK, volume.encode())
        warnings = tuple(w.replace(MARK, volume) for w in warnings)
    return Answer(kept.outcome, _encoded(patch) if patch else None, warnings)


def _encoded(patch: bytes) -> str:
    return base64.b64encode(patch).decode("ascii")
