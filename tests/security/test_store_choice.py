"""SECURITY.md, "A namespace admin": annotations pick one of the admin's stores by name and
nothing else about it; no annotation changes the store address, its CA or TLS checks, and
pods in the system namespaces are never injected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import CONFIG_ENV, AgentConfig, as_dict, parse
from tests.security.pods import FIXTURES, ours
from webhook.annotations import PLAIN
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.settings import load_config

CONFIG = load_config(FIXTURES / "config.yaml")
REVIEW = json.loads((FIXTURES / "reviews" / "deployment-native.json").read_text(encoding="utf-8"))
K = "latchkey.dev/"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ==\n-----END CERTIFICATE-----\n"
HOSTILE_VALUES = [
    "https://evil.example:8200", "http://127.0.0.1:8200", "evil.example:8200", PEM, "true",
    "false", "tls-skip-verify", "insecure", "skip", "1", "secret/data/x#k",
    "https://evil.example:8200/v1/secret/data/x#k",
]  # fmt: skip
INVENTED = [
    "address", "addr", "store-address", "vault-addr", "url", "endpoint", "endpoint-url",
    "ca", "ca-bundle", "caBundle", "ca-cert", "tls-skip-verify", "tls-insecure", "insecure",
    "skip-verify", "tls", "namespace", "auth", "audience", "auth-mount", "token-path",
    "store-kind", "kind", "region", "role-arn", "agent-image", "image", "config",
]  # fmt: skip
ENV_TRICKS = [
    "env-VAULT_ADDR", "env-VAULT_CACERT", "env-VAULT_SKIP_VERIFY", "env-SSL_CERT_FILE",
    "env-HTTPS_PROXY", "env-LATCHKEY_CONFIG", "env-AWS_ENDPOINT_URL",
]  # fmt: skip
KEYS = [*(k for k in PLAIN if k != "status"), *INVENTED, *ENV_TRICKS, "secret-x", "format-x",
        "template-x", "file-mode-x", "secret-address", "store-default"]  # fmt: skip
ADMIN_STORES = [as_dict(store) for store in CONFIG.stores.values()]


def admitted(annotations: dict[str, Any]) -> dict[str, Any] | None:
    """The injected pod for the Deployment review with ``annotations`` added; None if denied."""
    pod = json.loads(json.dumps(REVIEW["request"]["object"]))
    pod["metadata"]["annotations"].update(annotations)
    try:
        return mutate_pod(pod, namespace="shop", config=CONFIG).pod
    except Denied:
        return None


def assert_store_is_the_admins(pod: dict[str, Any], chosen: str) -> None:
    """Every agent carries exactly the admin's entry for the chosen store, and no other env."""
    for container in ours(pod):
        assert [e["name"] for e in container["env"]] == [CONFIG_ENV]
        config = parse(AgentConfig, json.loads(container["env"][0]["value"]))
        assert as_dict(config.store) == as_dict(CONFIG.stores[chosen])


@pytest.mark.parametrize("key", [pytest.param(k, id=k) for k in KEYS])
def test_no_annotation_changes_the_store_address_ca_or_tls(key: str) -> None:
    outcomes = set()
    for value in HOSTILE_VALUES:
        pod = admitted({K + key: value})
        outcomes.add("denied" if pod is None else "injected")
        if pod is not None:
            assert_store_is_the_admins(pod, value if key == "store" else "default")
    assert outcomes <= {"denied", "injected"}
    if key in INVENTED:
        assert outcomes == {"denied"}, f"{K}{key} is not an annotation and must be refused"


STORE_CHOICES = [
    pytest.param("default", {}, id="default"),
    pytest.param("team-vault", {}, id="team-vault"),
    pytest.param(
        "aws", {"secret-db": "secretsmanager:db", "secret-stripe": "ssm:/shop/stripe"}, id="aws"
    ),
]


@pytest.mark.parametrize(("store", "paths"), STORE_CHOICES)
def test_a_store_is_chosen_by_name_only(store: str, paths: dict[str, str]) -> None:
    pod = admitted({K + "store": store, **{K + key: path for key, path in paths.items()}})
    assert pod is not None
    assert_store_is_the_admins(pod, store)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(KEYS).map(lambda key: K + key),
        st.one_of(st.sampled_from(HOSTILE_VALUES), st.sampled_from(list(CONFIG.stores))),
        max_size=6,
    )
)
def test_any_mix_of_annotations_keeps_the_admins_store(annotations: dict[str, str]) -> None:
    pod = admitted(annotations)
    if pod is not None:
        assert_store_is_the_admins(pod, annotations.get(K + "store", "default"))


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public"])
def test_system_namespaces_are_never_injected(namespace: str) -> None:
    pod = json.loads(json.dumps(REVIEW["request"]["object"]))
    with pytest.raises(Denied, match=f"system namespace {namespace} are never injected"):
        mutate_pod(pod, namespace=namespace, config=CONFIG)
