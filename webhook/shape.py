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
from typing import Any, NotRequired

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict  # pydantic refuses typing.TypedDict before 3.12

from webhook.errors import Denied

# isinstance(value, OBJECT) is isinstance(value, Mapping), but settles a dict, which is what
# a decoded pod holds, by its type rather than by the ABC's slower check (dozens a pod).
OBJECT = (dict, Mapping)
# A denial lists at most this many fields: one wrong field is usually the whole story.
MAX_SHOWN = 3
EXPECTED = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "list_type": "expected a list",
    "dict_type": "expected an object",
    "missing": "is required",
}


# The shapes are TypedDicts, not models: validated into plain dicts that are thrown away,
# which costs less than building a model for every container. Strict, and silent about
# every field they do not name (camelCase, as the pod carries them).
_STRICT = ConfigDict(extra="ignore", strict=True)


@with_config(_STRICT)
class _SecurityContext(TypedDict):
    runAsUser: NotRequired[int | None]
    runAsGroup: NotRequired[int | None]
    fsGroup: NotRequired[int | None]


@with_config(_STRICT)
class _Named(TypedDict):
    name: str


@with_config(_STRICT)
class _Mount(TypedDict):
    mountPath: NotRequired[str | None]


@with_config(_STRICT)
class _Container(_Named):
    command: NotRequired[list[str] | None]
    env: NotRequired[list[_Named] | None]
    volumeMounts: NotRequired[list[_Mount] | None]
    securityContext: NotRequired[_SecurityContext | None]


@with_config(_STRICT)
class _Spec(TypedDict):
    containers: list[_Container]
    initContainers: NotRequired[list[_Container] | None]
    volumes: NotRequired[list[_Named] | None]
    securityContext: NotRequired[_SecurityContext | None]
    serviceAccountName: NotRequired[str | None]
    serviceAccount: NotRequired[str | None]
    shareProcessNamespace: NotRequired[bool | None]


@with_config(_STRICT)
class _Pod(TypedDict):
    spec: _Spec


_POD = TypeAdapter(_Pod)


def check_shape(pod: Mapping[str, Any]) -> None:
    """Deny, naming each wrong field by its path, when ``pod`` is not shaped like a Pod."""
    try:
        _POD.validate_python(pod)
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
