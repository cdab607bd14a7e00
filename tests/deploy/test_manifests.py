"""The overlays render, validate for the Kubernetes versions we support, and keep the
properties the install relies on (see docs/install.md)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.conftest import OVERLAYS
from tests.deploy.schemas import validate
from tests.deploy.tools import MANIFESTS, by_kind, kustomize
from webhook.settings import load_config

Docs = dict[str, list[dict[str, Any]]]
VERSIONS = ["1.29.0", "1.33.0"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_document_validates(rendered: Docs, overlay: str, version: str) -> None:
    docs = rendered[overlay]
    for doc in docs:
        validate(doc, version)
    kinds = {doc["kind"] for doc in docs}
    assert {"Deployment", "MutatingWebhookConfiguration", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize(
    ("kind", "breakage"),
    [
        pytest.param("Deployment", ("spec", "replicaz", 2), id="unknown-deployment-field"),
        pytest.param("Certificate", ("spec", "dnsName", ["x"]), id="unknown-certificate-field"),
        pytest.param("Issuer", ("spec", "selfSigned", "yes"), id="issuer-wrong-type"),
    ],
)
def test_validation_rejects_broken_documents(
    rendered: Docs, kind: str, breakage: tuple[str, str, Any]
) -> None:
    doc = copy.deepcopy(next(d for d in rendered["cert-manager"] if d["kind"] == kind))
    section, key, value = breakage
    doc[section][key] = value
    with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
        validate(doc, VERSIONS[-1])


@pytest.mark.parametrize("kind", ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"])
def test_cert_manager_overlay_wires_the_ca_into_the_webhook(rendered: Docs, kind: str) -> None:
    docs = rendered["cert-manager"]
    webhook = by_kind(docs, kind)
    injected = webhook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
    certificates = [d for d in docs if d["kind"] == "Certificate"]
    serving = next(d for d in certificates if d["metadata"]["name"] == "latchkey-webhook")
    assert injected == f"{serving['metadata']['namespace']}/{serving['metadata']['name']}"
    assert serving["spec"]["secretName"] == _tls_secret_name(docs)
    assert "latchkey-webhook.latchkey.svc" in serving["spec"]["dnsNames"]


def test_plain_overlay_carries_secret_and_ca_bundle(rendered: Docs) -> None:
    docs = rendered["plain"]
    secret = by_kind(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key"}
    assert secret["metadata"]["name"] == _tls_secret_name(docs)
    webhook = by_kind(docs, "MutatingWebhookConfiguration")["webhooks"][0]
    bundle = webhook["clientConfig"]["caBundle"]
    assert bundle
    guards = by_kind(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert [guard["clientConfig"]["caBundle"] for guard in guards] == [bundle, bundle]


def test_plain_overlay_on_a_fresh_checkout_names_the_command_to_run(tmp_path: Path) -> None:
    """Before hack/plain-certs.py has run, kustomize's error names it (the folder's name)."""
    bare = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, bare, ignore=shutil.ignore_patterns("generated-by-*"))
    with pytest.raises(AssertionError, match=r"generated-by-hack-plain-certs\.py/tls\.crt"):
        kustomize(bare / "overlays" / "plain")


def test_cert_manager_overlay_builds_on_a_fresh_checkout(tmp_path: Path) -> None:
    bare = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, bare, ignore=shutil.ignore_patterns("generated-by-*"))
    kinds = {doc["kind"] for doc in kustomize(bare / "overlays" / "cert-manager")}
    assert {"Certificate", "Issuer", "Deployment", "MutatingWebhookConfiguration"} <= kinds


def _tls_secret_name(docs: list[dict[str, Any]]) -> str:
    volumes = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    return str(next(v["secret"]["secretName"] for v in volumes if "secret" in v))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_map_loads_with_the_webhooks_own_loader(
    rendered: Docs, overlay: str, tmp_path: Path
) -> None:
    config_map = by_kind(rendered[overlay], "ConfigMap")
    assert config_map["metadata"]["name"] == "latchkey-config"
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"], encoding="utf-8")
    config = load_config(path)
    assert "default" in config.stores
    args = by_kind(rendered[overlay], "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--config=/etc/latchkey/config/config.yaml" in args["args"]


def test_own_overlay_replaces_the_config_as_the_docs_say(tmp_path: Path) -> None:
    """docs/install.md: set the store address from an overlay of your own."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    base = os.path.relpath(MANIFESTS / "overlays" / "cert-manager", overlay)
    (overlay / "kustomization.yaml").write_text(
        "namespace: latchkey\n"
        f"resources: [{base}]\n"
        "configMapGenerator:\n"
        "  - {name: latchkey-config, behavior: replace, files: [config.yaml]}\n",
        encoding="utf-8",
    )
    config = "stores:\n  default:\n    kind: vault\n    address: https://bao.example:8200\n"
    config += "    auth: {method: jwt, audience: openbao}\n"
    (overlay / "config.yaml").write_text(config, encoding="utf-8")
    docs = kustomize(overlay)
    config_map = by_kind(docs, "ConfigMap")
    assert config_map["metadata"]["name"] == "latchkey-config"
    assert config_map["data"]["config.yaml"] == config


@pytest.mark.parametrize("kind", ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"])
def test_the_preview_excludes_the_namespaces_the_install_excludes(
    rendered: Docs, kind: str
) -> None:
    from webhook.manifests import EXCLUDED_NAMESPACES

    for webhook in by_kind(rendered["cert-manager"], kind)["webhooks"]:
        (excluded,) = webhook["namespaceSelector"]["matchExpressions"]
        assert set(excluded["values"]) == EXCLUDED_NAMESPACES
