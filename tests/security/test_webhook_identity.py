"""SECURITY.md, "The webhook's own identity": no API rights, no token, no egress; and what a
compromised webhook could do is limited to opted-in pod creations outside system namespaces,
which fail closed when it is down."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import OVERLAYS
from tests.deploy.tools import by_kind

Docs = list[dict[str, Any]]


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, Docs]) -> Docs:
    return rendered[request.param]


def test_no_rbac_and_no_service_account_token(docs: Docs) -> None:
    kinds = {d["kind"] for d in docs}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert not any(d["apiVersion"].startswith("rbac.authorization.k8s.io") for d in docs)
    assert by_kind(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert not any("env" in c or "envFrom" in c for c in pod["containers"])


def test_no_egress_at_all(docs: Docs) -> None:
    policy = by_kind(docs, "NetworkPolicy")["spec"]
    assert "Egress" in policy["policyTypes"]
    assert policy["egress"] == []
    deployment = by_kind(docs, "Deployment")["spec"]
    assert policy["podSelector"]["matchLabels"] == deployment["selector"]["matchLabels"]


def test_blast_radius_is_opted_in_pod_creations(docs: Docs) -> None:
    (webhook,) = by_kind(docs, "MutatingWebhookConfiguration")["webhooks"]
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["sideEffects"] == "None"
    assert webhook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
         "resources": ["pods"], "scope": "Namespaced"},
    ]  # fmt: skip
    (condition,) = webhook["matchConditions"]
    assert "k.startsWith('latchkey.dev/')" in condition["expression"]
    (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
    assert excluded["operator"] == "NotIn"
    assert {"kube-system", "kube-public"} <= set(excluded["values"])
    assert webhook["timeoutSeconds"] == 5


def test_the_guard_sees_only_updates_of_injected_pods(docs: Docs) -> None:
    """latchkey-guard validates (it cannot patch), and only UPDATEs of injected pods."""
    for webhook in by_kind(docs, "ValidatingWebhookConfiguration")["webhooks"]:
        (rule,) = webhook["rules"]
        assert rule["operations"] == ["UPDATE"]
        assert rule["resources"] in (["pods"], ["pods/ephemeralcontainers"])
        injected = webhook["matchConditions"][0]["expression"]
        assert "object.metadata.annotations['latchkey.dev/status'] == 'injected'" in injected
        assert webhook["namespaceSelector"]["matchExpressions"][0]["operator"] == "NotIn"
