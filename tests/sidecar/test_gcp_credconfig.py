"""A gcloud credential configuration file as a gcp store, checked strictly: what
``gcloud iam workload-identity-pools create-cred-config`` writes is taken, anything
that would send the token elsewhere or run a program is refused, naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.config import GcpEndpoints
from sidecar.errors import ConfigError
from sidecar.stores.gcp_credconfig import from_credential_config

PROVIDER = "projects/123456789/locations/global/workloadIdentityPools/my-pool/providers/my-cluster"
SA = "app@my-project.iam.gserviceaccount.com"
IMPERSONATE = (
    f"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{SA}:generateAccessToken"
)
PRIVATE = GcpEndpoints(
    sts="https://sts-private.p.googleapis.com", iamcredentials="https://iam.internal.example/api"
)


def written(**changes: Any) -> dict[str, Any]:
    """What gcloud writes with --credential-source-file and --service-account."""
    info: dict[str, Any] = {
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{PROVIDER}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/var/run/token", "format": {"type": "text"}},
        "service_account_impersonation_url": IMPERSONATE,
        "token_info_url": "https://sts.googleapis.com/v1/introspect",
    }
    info.update(changes)
    return {k: v for k, v in info.items() if v is not None}


def test_what_gcloud_writes() -> None:
    config = from_credential_config(written(), project="my-project")
    assert (config.token_path, config.role) == ("/var/run/token", SA)
    assert config.store.workload_identity_provider == PROVIDER
    assert (config.store.project, config.store.service_account) == ("my-project", SA)
    assert config.store.audience == f"https://iam.googleapis.com/{PROVIDER}"


@pytest.mark.parametrize(
    ("changes", "endpoints", "role"),
    [
        pytest.param({"service_account_impersonation_url": None}, None, "", id="no-impersonation"),
        pytest.param({"credential_source": {"file": "t"}}, None, SA, id="no-format"),
        pytest.param({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"},
                     None, SA, id="id-token-type"),
        pytest.param({"universe_domain": None, "token_info_url": None}, None, SA,
                     id="older-gcloud"),
        pytest.param({"token_url": "https://sts-private.p.googleapis.com/v1/token",
                      "service_account_impersonation_url": "https://iam.internal.example/api/v1/"
                      f"projects/-/serviceAccounts/{SA}:generateAccessToken"},
                     PRIVATE, SA, id="admin-endpoints"),
    ],
)  # fmt: skip
def test_accepted(changes: dict[str, Any], endpoints: GcpEndpoints | None, role: str) -> None:
    config = from_credential_config(written(**changes), endpoints=endpoints)
    assert config.role == role
    assert config.store.endpoints == (endpoints or GcpEndpoints())


@pytest.mark.parametrize(
    ("changes", "endpoints", "words"),
    [
        pytest.param({"type": "service_account"}, None, ["type", "external_account"],
                     id="service-account-key"),
        pytest.param({"audience": "//iam.googleapis.com/locations/global/workforcePools/p/"
                      "providers/x"}, None, ["audience", "workloadIdentityPools"],
                     id="workforce-pool"),
        pytest.param({"subject_token_type": "urn:ietf:params:aws:token-type:aws4_request"},
                     None, ["subject_token_type"], id="aws-token-type"),
        pytest.param({"token_url": "https://evil.example/v1/token"}, None,
                     ["token_url", "https://sts.googleapis.com/v1/token"], id="foreign-sts"),
        pytest.param({}, PRIVATE, ["token_url", "https://sts-private.p.googleapis.com/v1/token"],
                     id="google-sts-when-admin-set-another"),
        pytest.param({"service_account_impersonation_url": IMPERSONATE.replace(
                      "iamcredentials.googleapis.com", "evil.example")}, None,
                     ["service_account_impersonation_url", "EMAIL:generateAccessToken"],
                     id="foreign-iam"),
        pytest.param({"service_account_impersonation_url": IMPERSONATE + "?x=1"}, None,
                     ["service_account_impersonation_url"], id="iam-url-with-query"),
        pytest.param({"service_account_impersonation_url": IMPERSONATE.replace(SA, "root")},
                     None, ["does not name a service account"], id="not-an-email"),
        pytest.param({"credential_source": {"executable": {"command": "/bin/sh -c id"}}}, None,
                     ["credential_source.executable", "run a program"], id="executable"),
        pytest.param({"credential_source": {"url": "http://169.254.169.254/token"}}, None,
                     ["credential_source.url", "server"], id="url"),
        pytest.param({"credential_source": {"environment_id": "aws1"}}, None,
                     ["credential_source.environment_id"], id="aws-metadata"),
        pytest.param({"credential_source": {"file": "t", "format": {
                      "type": "json", "subject_token_field_name": "id_token"}}}, None,
                     ["credential_source.format", "text"], id="json-format"),
        pytest.param({"credential_source": {"file": ""}}, None, ["credential_source.file"],
                     id="no-file"),
        pytest.param({"credential_source": "/var/run/token"}, None, ["credential_source"],
                     id="source-not-an-object"),
        pytest.param({"client_secret": "x"}, None, ["client_secret", "not supported"],
                     id="unknown-key"),
        pytest.param({"universe_domain": "example.com"}, None, ["universe_domain"],
                     id="other-universe"),
    ],
)  # fmt: skip
def test_refused_naming_the_field(
    changes: dict[str, Any], endpoints: GcpEndpoints | None, words: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        from_credential_config(written(**changes), endpoints=endpoints)
    message = str(caught.value)
    assert message.startswith("gcp credential configuration: ")
    for word in words:
        assert word in message


def test_a_bad_project_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="project"):
        from_credential_config(written(), project="Not A Project")


@given(url=st.text(max_size=120).filter(lambda u: u != "https://sts.googleapis.com/v1/token"))
def test_no_other_sts_is_taken(url: str) -> None:
    with pytest.raises(ConfigError, match="token_url"):
        from_credential_config(written(token_url=url))
