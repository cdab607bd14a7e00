"""Validate Kubernetes objects against the API's schemas, as ``kubernetes-validate --strict``.

Strict mode rejects unknown fields, which is what catches a misspelt key in a
patch. Uses the library's Python API (a subprocess per object is far slower).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kubernetes_validate

VERSIONS = ("1.29", "1.33")


def validate(obj: Mapping[str, Any], version: str) -> list[str]:
    """Schema errors of ``obj`` for Kubernetes ``version`` (e.g. "1.33"); [] when valid.

    Objects as the API server shows them to admission webhooks often have only
    ``metadata.generateName``; a placeholder name is filled in on a copy, since the
    library does not cope without one. The library stops at the first error.
    """
    data = copy.deepcopy(dict(obj))
    metadata = data.setdefault("metadata", {})
    if not metadata.get("name"):
        metadata["name"] = (metadata.get("generateName") or "unnamed-").rstrip("-") or "unnamed"
    try:
        kubernetes_validate.validate(data, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        location = ".".join(str(part) for part in exc.path) or "(root)"
        return [f"{location}: {exc.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
        return [str(exc.message)]
    return []


def as_pod(pod_or_template: Mapping[str, Any]) -> dict[str, Any]:
    """A bare pod template made into a Pod object that can be validated."""
    return {"apiVersion": "v1", "kind": "Pod", **pod_or_template}
