"""The OpenAPI description of ``/mutate`` and ``/validate``: what the API server sends
and what it gets back.

Those routes are raw ASGI endpoints (see :mod:`webhook.app`), so FastAPI cannot
derive these schemas; they are written here as JSON Schema and added to the
document FastAPI builds for the other routes (:func:`document`). They document the
contract and let schemathesis generate structured reviews; the app never validates
against them. The app serves no
OpenAPI document itself (nothing in a cluster needs one): ``app.openapi()`` builds it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from webhook.review import MAX_MESSAGE

Schema = dict[str, Any]


def _object(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


_STRING: Schema = {"type": "string"}
_STRINGS: Schema = {"type": "array", "items": _STRING}
_NAME: Schema = {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}
_NAMED: Schema = _object(["name"], name=_NAME)
_SECURITY_CONTEXT = _object(
    [], runAsUser={"type": "integer"}, runAsGroup={"type": "integer"}, fsGroup={"type": "integer"}
)
_CONTAINER = _object(
    ["name"],
    name=_NAME,
    image=_STRING,
    command=_STRINGS,
    env={"type": "array", "items": _NAMED},
    volumeMounts={
        "type": "array",
        "items": _object(["name", "mountPath"], name=_STRING, mountPath=_STRING),
    },
    securityContext=_SECURITY_CONTEXT,
)
# The MutatingWebhookConfiguration's matchConditions send opted-in pods only.
_OURS: dict[str, Schema] = {
    "latchkey.dev/inject": {"const": "true"},
    "latchkey.dev/secret-db": {"type": "string", "pattern": "^secret/data/[a-z]{1,8}$"},
    "latchkey.dev/env-API_KEY": {"type": "string", "pattern": "^secret/data/[a-z]{1,8}#key$"},
    "latchkey.dev/format-db": {"enum": ["json", "yaml", "env", "dotenv", "raw"]},
    "latchkey.dev/containers": _STRING,
    "latchkey.dev/on-change": _STRING,
}
_ANNOTATIONS = _object(["latchkey.dev/inject"], **_OURS)
POD = _object(
    ["metadata", "spec"],
    metadata=_object(["annotations"], generateName=_STRING, annotations=_ANNOTATIONS),
    spec=_object(
        ["containers"],
        containers={"type": "array", "items": _CONTAINER, "minItems": 1},
        initContainers={"type": "array", "items": _CONTAINER},
        volumes={"type": "array", "items": _NAMED},
        securityContext=_SECURITY_CONTEXT,
        serviceAccountName=_STRING,
    ),
)
# What the API server sends under the MutatingWebhookConfiguration in manifests/: a Pod
# CREATE. Other reviews are answered too (allowed, untouched).
ADMISSION_REVIEW = _object(
    ["apiVersion", "kind", "request"],
    apiVersion={"enum": ["admission.k8s.io/v1"]},
    kind={"enum": ["AdmissionReview"]},
    request=_object(
        ["uid", "kind", "resource", "namespace", "operation", "object"],
        uid={"type": "string", "minLength": 1},
        kind=_object(["kind"], group={"const": ""}, version=_STRING, kind={"const": "Pod"}),
        resource=_object(["resource"], group={"const": ""}, resource={"const": "pods"}),
        namespace={"type": "string", "minLength": 1},
        operation={"const": "CREATE"},
        dryRun={"type": "boolean"},
        object=POD,
    ),
)
_MESSAGE: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE}
ANSWER = _object(
    ["apiVersion", "kind", "response"],
    apiVersion={"const": "admission.k8s.io/v1"},
    kind={"const": "AdmissionReview"},
    response=_object(
        ["uid", "allowed"],
        uid={"type": "string", "minLength": 1},
        allowed={"type": "boolean"},
        patchType={"const": "JSONPatch"},
        patch={"type": "string", "contentEncoding": "base64"},
        warnings={"type": "array", "items": _MESSAGE},
        status=_object(
            ["code", "message"], code={"enum": [403, 500]}, message=_MESSAGE, reason=_STRING
        ),
    ),
)
ERROR = _object(["error"], error=_MESSAGE)


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


MUTATE: Schema = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ADMISSION_REVIEW}},
    },
    "responses": {
        "200": _json("The answer: allowed with a JSONPatch, or denied with a message", ANSWER),
        "400": _json("The body is not a usable admission.k8s.io/v1 AdmissionReview", ERROR),
        "413": _json("The body is over the size limit", ERROR),
        "415": _json("The content type is not application/json", ERROR),
    },
}

REVIEW_ROUTES = {"/mutate": "mutate", "/validate": "validate"}


def document(app: FastAPI) -> Schema:
    """The app's OpenAPI document: FastAPI's for its routes, plus the review routes."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        paths = schema.setdefault("paths", {})
        for path, operation in REVIEW_ROUTES.items():
            paths[path] = {"post": {"operationId": operation, **MUTATE}}
        app.openapi_schema = schema
    return app.openapi_schema
