"""The Azure stand-in (tests/azureserver.py) answers Microsoft's own libraries as Azure
does: azure-identity's WorkloadIdentityCredential logs in with a projected token, and
azure-keyvault-secrets' SecretClient walks the Bearer challenge and reads. What they
accept, and the exceptions they raise for each refusal, is what makes the agent's
tests against the stand-in worth something."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)
from azure.identity import WorkloadIdentityCredential
from azure.keyvault.secrets import SecretClient

from hack.localstore import Issuer
from tests.azureserver import AUDIENCE, AzureServer, FederatedCredential

SCOPE = "https://vault.azure.net/.default"
SUBJECT = "system:serviceaccount:app:app"


@dataclass
class Azure:
    server: AzureServer
    ca_file: Path
    reader: str  # federated for SUBJECT, Secrets User on the vault
    unassigned: str  # federated for SUBJECT, no role assignment


@pytest.fixture(scope="module")
def azure(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Azure]:
    server = AzureServer(issuer)
    server.start()
    ca_file = tmp_path_factory.mktemp("azure") / "ca.pem"
    ca_file.write_text(server.ca_pem)
    federated = FederatedCredential(issuer.issuer, SUBJECT)
    reader, unassigned = server.add_app(None, federated), server.add_app(None, federated)
    server.grant(reader)
    yield Azure(server, ca_file, reader, unassigned)
    server.stop()


def credential(azure: Azure, token_file: Path, **kw: Any) -> WorkloadIdentityCredential:
    options = {"tenant_id": azure.server.tenant, "client_id": azure.reader} | kw
    return WorkloadIdentityCredential(
        token_file_path=str(token_file),
        authority=azure.server.authority_host,
        connection_verify=str(azure.ca_file),
        **options,
    )


def secret_client(azure: Azure, token_file: Path, **kw: Any) -> SecretClient:
    # The stand-in is no *.vault.azure.net host, so the SDK's check that the challenge's
    # resource matches the vault's domain is off; everything else is as in Azure.
    return SecretClient(
        azure.server.vault_url,
        credential(azure, token_file, **kw),
        connection_verify=str(azure.ca_file),
        verify_challenge_resource=False,
    )


@pytest.fixture
def token_file(tmp_path: Path, issuer: Issuer) -> Path:
    path = tmp_path / "token"
    path.write_text(issuer.mint(namespace="app", service_account="app", audience=AUDIENCE))
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_get_secret_latest_and_by_version(azure: Azure, token_file: Path) -> None:
    name = unique("db")
    first = azure.server.set_secret(name, "one")
    azure.server.set_secret(name, '{"password": "two"}', content_type="application/json")
    client = secret_client(azure, token_file)
    before = azure.server.issued(azure.reader)
    latest, old = client.get_secret(name), client.get_secret(name, first)
    assert (latest.value, latest.properties.content_type) == (
        '{"password": "two"}',
        "application/json",
    )
    assert latest.properties.version != first
    assert len(latest.properties.version or "") == 32
    assert latest.properties.vault_url == azure.server.vault_url
    assert (old.value, old.properties.version, old.properties.enabled) == ("one", first, True)
    assert azure.server.issued(azure.reader) == before + 1, "the SDK's token cache holds"


def test_names_are_case_insensitive(azure: Azure, token_file: Path) -> None:
    name = unique("Mixed-Case")
    azure.server.set_secret(name, "v")
    secret = secret_client(azure, token_file).get_secret(name.upper())
    assert (secret.value, secret.name) == ("v", name)


def _mint(issuer: Issuer, **claims: Any) -> str:
    options = {"namespace": "app", "service_account": "app", "audience": AUDIENCE} | claims
    return issuer.mint(**options)


@pytest.mark.parametrize(
    ("token", "options", "words"),
    [
        pytest.param("other-subject", {}, ["AADSTS700213", "system:serviceaccount:app:other"],
                     id="subject-without-credential"),
        pytest.param("other-audience", {}, ["AADSTS70021", "Assertion Audience: 'openbao'"],
                     id="wrong-audience"),
        pytest.param("other-issuer", {}, ["AADSTS700211", "https://elsewhere.example"],
                     id="unknown-issuer"),
        pytest.param("forged", {}, ["AADSTS700027", "signature"], id="forged-signature"),
        pytest.param("expired", {}, ["AADSTS700024", "valid time range"], id="expired"),
        pytest.param("not-a-jwt", {}, ["AADSTS50027"], id="malformed"),
        pytest.param("good", {"client_id": str(uuid.UUID(int=7))}, ["AADSTS700016"],
                     id="unknown-client"),
        pytest.param("good", {"tenant_id": str(uuid.UUID(int=9))}, ["AADSTS90002"],
                     id="unknown-tenant"),
    ],
)  # fmt: skip
def test_entra_refusals(
    azure: Azure, issuer: Issuer, tmp_path: Path, token: str, options: dict[str, str],
    words: list[str],
) -> None:  # fmt: skip
    tokens = {
        "good": _mint(issuer),
        "other-subject": _mint(issuer, service_account="other"),
        "other-audience": _mint(issuer, audience="openbao"),
        "other-issuer": _mint(Issuer(issuer="https://elsewhere.example")),
        "forged": _mint(Issuer()),  # the cluster's issuer URL, another key
        "expired": _mint(issuer, ttl=60, now=1_000_000_000),
        "not-a-jwt": "not-a-jwt",
    }
    path = tmp_path / "token"
    path.write_text(tokens[token])
    with pytest.raises(ClientAuthenticationError) as caught:
        credential(azure, path, **options).get_token(SCOPE)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(
    ("who", "version", "error", "code"),
    [
        pytest.param("unassigned", None, HttpResponseError, "ForbiddenByRbac", id="no-role"),
        pytest.param("reader", "missing", ResourceNotFoundError, None, id="missing-secret"),
        pytest.param("reader", "0" * 32, ResourceNotFoundError, None, id="missing-version"),
        pytest.param("reader", "disabled", HttpResponseError, "SecretDisabled",
                     id="disabled-version"),
    ],
)  # fmt: skip
def test_key_vault_refusals(
    azure: Azure, token_file: Path, who: str, version: str | None, error: type[Exception],
    code: str | None,
) -> None:  # fmt: skip
    name = unique("guarded")
    azure.server.set_secret(name, "x")
    client = secret_client(azure, token_file, client_id=getattr(azure, who))
    if version == "missing":
        name, version = unique("missing"), None
    elif version == "disabled":
        azure.server.disable(name)
        version = None
    with pytest.raises(error) as caught:
        client.get_secret(name, version)
    raised: Any = caught.value
    assert raised.status_code == (404 if error is ResourceNotFoundError else 403)
    if code is not None:
        assert raised.error.innererror["code"] == code
    if code == "ForbiddenByRbac":
        assert f"appid={azure.unassigned}" in str(raised)


def test_a_role_on_one_secret_is_that_secret_only(
    azure: Azure, issuer: Issuer, token_file: Path
) -> None:
    mine, theirs = unique("mine"), unique("theirs")
    azure.server.set_secret(mine, "m")
    azure.server.set_secret(theirs, "t")
    scoped = azure.server.add_app(None, FederatedCredential(issuer.issuer, SUBJECT))
    azure.server.grant(scoped, mine)
    client = secret_client(azure, token_file, client_id=scoped)
    assert client.get_secret(mine).value == "m"
    with pytest.raises(HttpResponseError, match="ForbiddenByRbac"):
        client.get_secret(theirs)


# --- the wire, as Key Vault answers what the SDK never sends ----------------------------


def trust(azure: Azure) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(azure.ca_file))


@pytest.fixture
def vault(azure: Azure) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=azure.server.vault_url, verify=trust(azure)) as client:
        yield client


def test_no_token_gets_the_bearer_challenge(azure: Azure, vault: httpx.Client) -> None:
    answer = vault.get("/secrets/anything", params={"api-version": "7.5"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == (
        f'Bearer authorization="{azure.server.authority_host}/{azure.server.tenant}", '
        'resource="https://vault.azure.net"'
    )
    assert answer.json()["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        pytest.param({}, 400, ["BadParameter", "api-version"], id="no-api-version"),
        pytest.param({"api-version": "9.9"}, 400, ["BadParameter", "(9.9) is not recognized"],
                     id="unknown-api-version"),
    ],
)  # fmt: skip
def test_api_version_is_required(
    vault: httpx.Client, query: dict[str, str], status: int, words: list[str]
) -> None:
    answer = vault.get("/secrets/anything", params=query)
    assert answer.status_code == status
    for word in words:
        assert word in answer.text


def test_an_unknown_url_is_an_html_404(vault: httpx.Client) -> None:
    answer = vault.get("/no/such/thing", params={"api-version": "7.5"})
    assert (answer.status_code, answer.headers["content-type"]) == (404, "text/html")


def test_a_rolled_signing_key_voids_tokens(azure: Azure, token_file: Path, tmp_path: Path) -> None:
    """Tokens signed with Entra's old key are refused with a 401 challenge; a new one works."""
    name = unique("rolled")
    azure.server.set_secret(name, "r")
    token = credential(azure, token_file).get_token(SCOPE).token
    header = {"Authorization": f"Bearer {token}"}
    url = f"{azure.server.vault_url}/secrets/{name}"
    with httpx.Client(verify=trust(azure), params={"api-version": "7.5"}) as http:
        assert http.get(url, headers=header).json()["value"] == "r"
        azure.server.roll_signing_key()
        refused = http.get(url, headers=header)
    assert refused.status_code == 401
    assert "www-authenticate" in refused.headers
    fresh = tmp_path / "fresh"
    fresh.write_text(token_file.read_text())
    assert secret_client(azure, fresh).get_secret(name).value == "r"
