"""A check that the pod fields the webhook reads have the types Kubernetes gives them.

The API server decodes a pod into its typed form before admission, so a real
request always has a list of containers, string names and integer uids. The
webhook's port is reachable from inside the cluster, though, and a request with
``containers: 5`` must get a denial that names the field, not an internal error.
This validates and discards: the pod itself stays the raw dict it came as (a
model dumped back would drop fields it does not know). Fields the webhook never
reads are not looked at; the API server validates the whole pod after admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from webhook.errors import Denied

# A denial lists at most this many fields: one wrong field is usually the whole story.
MAX_SHOWN = 3
EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "model_type": "expected an object",
    "dict_type": "expected an object",
    "missing": "is required",
}


class _Shape(BaseModel):
    """Strict about the fields it names (camelCase, as the pod carries them), silent about
    every other one: ignored, not kept (the model is thrown away, and keeping a container's
    every other field costs a copy of each)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _SecurityContext(_Shape):
    runAsUser: int | None = None
    runAsGroup: int | None = None
    fsGroup: int | None = None


class _Named(_Shape):
    name: str


class _Mount(_Shape):
    mountPath: str | None = None


class _Container(_Named):
    command: list[str] | None = None
    env: list[_Named] | None = None
    volumeMounts: list[_Mount] | None = None
    securityContext: _SecurityContext | None = None


class _Spec(_Shape):
    containers: list[_Container]
    initContainers: list[_Container] | None = None
    volumes: list[_Named] | None = None
    securityContext: _SecurityContext | None = None
    serviceAccountName: str | None = None
    serviceAccount: str | None = None
    shareProcessNamespace: bool | None = None


class _Pod(_Shape):
    spec: _Spec


def check_shape(pod: Mapping[str, Any]) -> None:
    """Deny, naming each wrong field by its path, when ``pod`` is not shaped like a Pod."""
    try:
        _Pod.model_validate(pod)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        shown = [f"pod field {_path(e['loc'])}: {_expected(e['type'], e['msg'])}" for e in errors]
        more = len(shown) - MAX_SHOWN
        raise Denied(
            "\n".join(shown[:MAX_SHOWN] + ([f"and {more} more"] if more > 0 else []))
        ) from None


def _path(loc: tuple[int | str, ...]) -> str:
    """``spec.containers[0].name``, as ``kubectl explain`` and the API server write it."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)[1:]


def _expected(kind: str, message: str) -> str:
    return EXPECTED.get(kind, message.lower())
