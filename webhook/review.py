"""The AdmissionReview v1 envelope and the answers the webhook gives.

This models the envelope only. ``request.object`` stays the raw dict the API
server sent: loading a Pod into a typed model and dumping it back would drop
the fields the model does not know, and the computed patch would remove them.
Responses are plain dicts, serialised once by the route.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import orjson
import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from webhook.errors import BadRequest

API_VERSION = "admission.k8s.io/v1"
# Longest message an answer carries, in UTF-8 bytes: a denial travels through the API
# server into events and kubectl output, and an error answer into the API server's log.
MAX_MESSAGE = 4096
CUT = "\n(message cut)"


class _Envelope(BaseModel):
    """Ignores what it does not read: the API server sends more than we need."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class GroupVersionKind(_Envelope):
    group: str = ""
    version: str = ""
    kind: str


class GroupVersionResource(_Envelope):
    group: str = ""
    version: str = ""
    resource: str


class AdmissionRequest(_Envelope):
    uid: str = Field(min_length=1)
    kind: GroupVersionKind
    resource: GroupVersionResource
    sub_resource: str = Field(default="", alias="subResource")
    namespace: str = ""
    operation: str
    dry_run: bool = Field(default=False, alias="dryRun")
    object: dict[str, Any] | None = None
    old_object: dict[str, Any] | None = Field(default=None, alias="oldObject")

    @property
    def _is_pod(self) -> bool:
        return (
            self.kind.group == "" and self.kind.kind == "Pod" and self.resource.resource == "pods"
        )

    @property
    def is_pod_update(self) -> bool:
        """A running Pod changed: its spec (images) or its ephemeral containers."""
        return (
            self.operation == "UPDATE"
            and self._is_pod
            and self.sub_resource in ("", "ephemeralcontainers")
        )

    @property
    def is_pod_create(self) -> bool:
        """Only a new Pod is ours to mutate; sub-resources and other kinds pass."""
        return self.operation == "CREATE" and self._is_pod and not self.sub_resource


class AdmissionReview(_Envelope):
    api_version: Literal["admission.k8s.io/v1"] = Field(alias="apiVersion")
    kind: Literal["AdmissionReview"]
    request: AdmissionRequest


def parse_review(body: bytes) -> AdmissionReview:
    """The envelope of ``body``; BadRequest with a one-line reason otherwise."""
    if not body.strip():
        raise BadRequest("empty body: expected an admission.k8s.io/v1 AdmissionReview")
    review = _parse_fast(body)
    if review is None:
        try:
            review = AdmissionReview.model_validate_json(body)
        except ValidationError as exc:
            raise BadRequest(_describe(exc)) from exc
    request = review.request
    if request.is_pod_create and request.object is None:
        raise BadRequest("request.object: a Pod CREATE must carry the pod")
    if request.is_pod_create and not request.namespace:
        raise BadRequest("request.namespace: a Pod CREATE must name its namespace")
    return review


def _parse_fast(body: bytes) -> AdmissionReview | None:
    """The envelope by the quicker road, or None for :func:`parse_review` to take the
    strict one, which alone words the refusals.

    The same JSON parser as ``model_validate_json`` (pydantic-core's, so the same limits
    on depth and numbers), then the envelope validated from Python values, which
    accepts exactly what validating the JSON does. ``model_validate_json`` builds the
    whole pod as a JSON tree of its own before turning it into Python objects;
    ``from_json`` builds them in one pass, caching only the keys (the pod's values are
    mostly distinct strings). Alone that is 1-2 µs; within a whole review, where the
    tree's allocations and the string cache fall out of the CPU caches, about 10 µs.
    """
    try:
        return AdmissionReview.model_validate(pydantic_core.from_json(body, cache_strings="keys"))
    except ValueError:  # not JSON, or a ValidationError
        return None


def _describe(exc: ValidationError) -> str:
    """The first problem, by JSON path: enough to fix the sender, short enough to log."""
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    if error["type"] == "json_invalid" and "recursion limit" in error["msg"]:
        return "body nests too deep (the JSON parser stops at about 200 levels)"
    if error["type"] == "json_invalid":
        return "body is not JSON: expected an admission.k8s.io/v1 AdmissionReview"
    where = ".".join(str(part) for part in error["loc"]) or "body"
    if where == "apiVersion" and error["type"] == "literal_error":
        return f"apiVersion: this webhook speaks {API_VERSION} only"
    if where == "kind" and error["type"] == "literal_error":
        return "kind: expected AdmissionReview"
    if error["type"] == "model_type":
        return f"{where}: expected a JSON object (an admission.k8s.io/v1 AdmissionReview)"
    return f"{where}: {error['msg']}"


def dumps(document: Any) -> bytes:
    """Compact JSON: orjson, with the standard library for what orjson refuses (integers
    beyond 64 bits, which a pod may carry and a patch then copies)."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


def bounded(message: str) -> str:
    """``message`` cut to at most :data:`MAX_MESSAGE` UTF-8 bytes, saying so when cut."""
    data = message.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_MESSAGE:
        return message
    return data[: MAX_MESSAGE - len(CUT)].decode("utf-8", "ignore") + CUT


def _review(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def allowed(uid: str, patch: str | None = None, warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    """Admit, with the JSON patch when there is one (base64 of its JSON, as sent)."""
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = patch
    if warnings:
        response["warnings"] = list(warnings)
    return _review(response)


def denied(uid: str, message: str, *, code: Literal[403, 500] = 403) -> dict[str, Any]:
    """Refuse the object; the API server shows ``message`` to whoever created it."""
    reason = "Forbidden" if code == 403 else "InternalError"
    status = {"code": code, "message": bounded(message), "reason": reason}
    return _review({"uid": uid, "allowed": False, "status": status})


def errored(uid: str) -> dict[str, Any]:
    """Refuse after a bug of ours: the pod must not start without its secrets."""
    message = f"internal error handling request {uid}; see the webhook logs"
    return denied(uid, message, code=500)
