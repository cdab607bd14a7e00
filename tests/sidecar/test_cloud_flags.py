"""The standalone flags of the cloud stores: what a user already has becomes the config.

``--azure-vault-url`` reads the variables Azure Workload Identity's own webhook sets
in a pod; ``--gcp-credential-config`` reads the file ``gcloud`` writes. Pure: parse
the flags, lay them over an empty config, validate, compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sidecar.cli import parser
from sidecar.config import AgentConfig, AzureStore, GcpStore
from sidecar.errors import ConfigError
from sidecar.sources import apply_flags, validate

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "6e3a5b3c-1f2d-4c8e-9a7b-0d4e5f6a7b8c"
OTHER = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
AZURE_ENV = {
    "AZURE_TENANT_ID": TENANT,
    "AZURE_CLIENT_ID": CLIENT,
    "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
    "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
}


def configured(argv: list[str], environ: dict[str, str]) -> AgentConfig:
    args = parser().parse_args([*argv, "--secret", "db=db-password"])
    return validate(apply_flags({}, args, environ=environ), source="flags")


@pytest.mark.parametrize(
    ("argv", "environ", "client", "token_path"),
    [
        pytest.param([], AZURE_ENV, CLIENT, AZURE_ENV["AZURE_FEDERATED_TOKEN_FILE"], id="env"),
        pytest.param(
            ["--role", OTHER], AZURE_ENV, CLIENT, AZURE_ENV["AZURE_FEDERATED_TOKEN_FILE"],
            id="role-beside-env",
        ),
        pytest.param(
            ["--role", OTHER, "--token-path", "/t"],
            {"AZURE_TENANT_ID": TENANT}, OTHER, "/t", id="role-as-client",
        ),
    ],
)  # fmt: skip
def test_azure_vault_url_reads_azure_workload_identity_env(
    argv: list[str], environ: dict[str, str], client: str, token_path: str
) -> None:
    config = configured(["--azure-vault-url", "https://shop.vault.azure.net", *argv], environ)
    assert isinstance(config.store, AzureStore)
    assert (config.store.tenant_id, config.store.client_id) == (TENANT, client)
    assert config.token_path == token_path
    assert config.store.vault_url == "https://shop.vault.azure.net"


def test_azure_vault_url_without_a_tenant_says_which_variable() -> None:
    with pytest.raises(ConfigError, match=r"needs \$AZURE_TENANT_ID"):
        configured(["--azure-vault-url", "https://shop.vault.azure.net"], {})


def test_two_stores_from_flags_are_refused_by_name() -> None:
    argv = ["--address", "https://bao:8200", "--azure-vault-url", "https://shop.vault.azure.net"]
    with pytest.raises(ConfigError, match="--address and --azure-vault-url: give one store"):
        configured(argv, AZURE_ENV)


def test_ca_file_goes_with_a_cloud_store(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    argv = ["--azure-vault-url", "https://shop.vault.azure.net", "--ca-file", str(ca)]
    config = configured(argv, AZURE_ENV)
    assert isinstance(config.store, AzureStore)
    assert config.store.ca_bundle == "-----BEGIN CERTIFICATE-----\n"


PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/clusters/providers/prod-eu"
SERVICE_ACCOUNT = "app@shop-prod.iam.gserviceaccount.com"


def credential_config(**changes: Any) -> dict[str, Any]:
    """What ``gcloud iam workload-identity-pools create-cred-config`` writes."""
    return {
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{PROVIDER}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "service_account_impersonation_url": "https://iamcredentials.googleapis.com/v1/"
        f"projects/-/serviceAccounts/{SERVICE_ACCOUNT}:generateAccessToken",
        "credential_source": {"file": "/var/run/service-account/token", "format": {"type": "text"}},
    } | changes


def gcp_configured(tmp_path: Path, info: dict[str, Any], *argv: str, base: Any = None) -> Any:
    path = tmp_path / "credential-config.json"
    path.write_text(json.dumps(info), encoding="utf-8")
    args = parser().parse_args(["--gcp-credential-config", str(path), *argv, "--secret", "db=db"])
    return validate(apply_flags(base or {}, args), source="flags")


def test_gcp_credential_config_becomes_the_store(tmp_path: Path) -> None:
    config = gcp_configured(tmp_path, credential_config(), "--gcp-project", "shop-prod")
    assert isinstance(config.store, GcpStore)
    assert config.store.workload_identity_provider == PROVIDER
    assert (config.store.project, config.role) == ("shop-prod", SERVICE_ACCOUNT)
    assert config.token_path == "/var/run/service-account/token"


def test_gcp_credential_config_may_name_the_configured_private_endpoints(tmp_path: Path) -> None:
    private = "https://sts-shop.p.googleapis.com"
    base = {"store": {"kind": "gcp", "workloadIdentityProvider": PROVIDER,
                      "endpoints": {"sts": private}}}  # fmt: skip
    info = credential_config(token_url=f"{private}/v1/token")
    config = gcp_configured(tmp_path, info, base=base)
    assert config.store.endpoints.sts == private
    with pytest.raises(ConfigError, match="token_url"):
        gcp_configured(tmp_path, info)  # without the admin's endpoints: not Google's URL


def test_gcp_credential_config_with_an_executable_source_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    info = credential_config(credential_source={"executable": {"command": "/bin/steal"}})
    with pytest.raises(ConfigError) as refused:
        gcp_configured(tmp_path, info)
    message = str(refused.value)
    assert message.startswith(f"--gcp-credential-config {tmp_path}/credential-config.json: ")
    assert "credential_source" in message
    assert "executable" in message


def test_gcp_credential_config_that_is_not_json_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cc.json"
    path.write_text("type: external_account\n", encoding="utf-8")
    args = parser().parse_args(["--gcp-credential-config", str(path), "--secret", "db=db"])
    with pytest.raises(ConfigError, match="not valid JSON"):
        apply_flags({}, args)
