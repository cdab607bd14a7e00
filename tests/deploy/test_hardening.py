"""The properties of the rendered install that its safety depends on: least privilege,
restricted pods, availability through upgrades and drains, and a webhook that only
ever sees opted-in pods."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.conftest import OVERLAYS
from tests.deploy.tools import by_kind

Docs = dict[str, list[dict[str, Any]]]


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: Docs) -> list[dict[str, Any]]:
    return rendered[request.param]


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(by_kind(docs, "Deployment")["spec"]["template"]["spec"])


def test_no_api_rights_and_no_token(docs: list[dict[str, Any]]) -> None:
    rbac = [d["kind"] for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io")]
    assert rbac == []
    assert by_kind(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    pod = _pod(docs)
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")["metadata"]["name"]


def test_pod_meets_the_restricted_profile(docs: list[dict[str, Any]]) -> None:
    pod = _pod(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"]["memory"]
        assert container["resources"]["limits"]["memory"]
    namespace = by_kind(docs, "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_stays_available_through_upgrades_and_drains(docs: list[dict[str, Any]]) -> None:
    deployment = by_kind(docs, "Deployment")["spec"]
    assert deployment["replicas"] >= 2
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    spread = _pod(docs)["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == deployment["selector"]["matchLabels"]


def test_probes_use_https_on_the_serving_port(docs: list[dict[str, Any]]) -> None:
    container = _pod(docs)["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]


def test_tls_secret_is_a_directory_mount(docs: list[dict[str, Any]]) -> None:
    """subPath mounts never see an updated Secret, so a renewal would not reach the pod."""
    container = _pod(docs)["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert "subPath" not in mounts["tls"]
    assert mounts["tls"]["readOnly"] is True
    assert f"--tls-cert-file={mounts['tls']['mountPath']}/tls.crt" in container["args"]


def test_service_and_network_policy_reach_the_serving_port(docs: list[dict[str, Any]]) -> None:
    port = _pod(docs)["containers"][0]["ports"][0]
    service = by_kind(docs, "Service")["spec"]["ports"][0]
    assert (service["port"], service["targetPort"]) == (443, port["name"])
    policy = by_kind(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == []
    assert [p["port"] for rule in policy["ingress"] for p in rule["ports"]] == [
        port["containerPort"]
    ]


def test_webhook_registration(docs: list[dict[str, Any]]) -> None:
    config = by_kind(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["name"] == "latchkey"
    (webhook,) = config["webhooks"]
    assert webhook["name"] == "inject.latchkey.dev"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["sideEffects"] == "None"
    assert webhook["timeoutSeconds"] <= 10
    assert webhook["failurePolicy"] == "Fail"
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    service = webhook["clientConfig"]["service"]
    assert (service["name"], service["namespace"], service["path"]) == (
        by_kind(docs, "Service")["metadata"]["name"],
        by_kind(docs, "Namespace")["metadata"]["name"],
        "/mutate",
    )
    (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
    assert excluded["key"] == "kubernetes.io/metadata.name"
    assert excluded["operator"] == "NotIn"
    assert set(excluded["values"]) == {"kube-system", "kube-public", "latchkey"}


def test_guard_registration(docs: list[dict[str, Any]]) -> None:
    """latchkey-guard: updates of injected pods, Fail, the same service and exclusions."""
    config = by_kind(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["name"] == "latchkey-guard"
    debug, images = config["webhooks"]
    assert (debug["name"], images["name"]) == (
        "debug.guard.latchkey.dev",
        "images.guard.latchkey.dev",
    )
    assert debug["rules"][0]["resources"] == ["pods/ephemeralcontainers"]
    assert images["rules"][0]["resources"] == ["pods"]
    mutating = by_kind(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    for webhook in (debug, images):
        assert webhook["rules"][0]["operations"] == ["UPDATE"]
        assert webhook["failurePolicy"] == "Fail"
        assert webhook["sideEffects"] == "None"
        assert webhook["timeoutSeconds"] <= 10
        assert webhook["clientConfig"]["service"]["path"] == "/validate"
        service = {k: v for k, v in webhook["clientConfig"]["service"].items() if k != "path"}
        assert service == {
            k: v for k, v in mutating["clientConfig"]["service"].items() if k != "path"
        }
        assert webhook["namespaceSelector"] == mutating["namespaceSelector"]
