"""Validating rendered documents: Kubernetes kinds with kubernetes-validate, cert-manager
kinds against cert-manager's own CRD schemas (vendored in ``tests/deploy/crds/cert-manager``).

CRD schemas allow unknown fields (the API server prunes them silently), so they are
made strict here the way ``kubectl apply --validate=strict`` would be: an object with
listed properties accepts no others unless it says it preserves unknown fields.
"""

from __future__ import annotations

import functools
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from tests.deploy.tools import CERT_MANAGER_SCHEMAS

CERT_MANAGER_GROUP = "cert-manager.io"


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    closed = "properties" in strict and "additionalProperties" not in strict
    if closed and not strict.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


@functools.cache
def cert_manager_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, from every vendored CRD file."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    files = sorted(CERT_MANAGER_SCHEMAS.glob("*.yaml"))
    assert files, f"no cert-manager CRDs in {CERT_MANAGER_SCHEMAS.resolve()}"
    for path in files:
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(doc: dict[str, Any], version: str) -> None:
    """Raise when ``doc`` is not valid for Kubernetes ``version`` (or cert-manager's schema)."""
    if doc["apiVersion"].startswith(CERT_MANAGER_GROUP + "/"):
        schema = cert_manager_schemas()[(doc["apiVersion"], doc["kind"])]
        jsonschema.validate(doc, schema)
    else:
        kubernetes_validate.validate(doc, version, strict=True)
