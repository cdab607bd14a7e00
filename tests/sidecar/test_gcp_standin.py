"""The Google stand-in (tests/gcpserver.py) is faithful: Google's own client library,
google-auth, reads through it as it reads through Google, and its refusals reach
google-auth as Google's do. What the agent's tests rely on is proved here with a
client the agent's code has no part in."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from google.auth import identity_pool
from google.auth.exceptions import OAuthError, RefreshError
from google.auth.transport.requests import AuthorizedSession, Request

from hack.localstore import Issuer
from tests.gcpserver import PROJECT, SCOPE, GcpServer

SA = "reader@latchkey-test.iam.gserviceaccount.com"
JWT = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture(scope="module")
def gcp(issuer: Issuer) -> Iterator[GcpServer]:
    server = GcpServer(issuer)
    server.start()
    member = server.principal("app", "app")
    server.allow_impersonation(SA, member)
    for name, value in (("direct", b"direct-value"), ("impersonated", b"sa-value")):
        server.add_version(name, value)
    server.bind_accessor("direct", member)
    server.bind_accessor("impersonated", f"serviceAccount:{SA}")
    server.add_version("nobody", b"x")
    yield server
    server.stop()


@pytest.fixture
def ca_file(gcp: GcpServer, tmp_path: Path) -> str:
    path = tmp_path / "standin-ca.pem"
    path.write_text(gcp.ca_pem)
    return str(path)


def credentials(
    gcp: GcpServer, token_file: Path, *, impersonate: str | None = None
) -> identity_pool.Credentials:
    """What ``gcloud iam workload-identity-pools create-cred-config`` writes, pointed here."""
    info: dict[str, Any] = {
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{gcp.provider}",
        "subject_token_type": JWT,
        "token_url": f"{gcp.endpoints['sts']}/v1/token",
        "credential_source": {"file": str(token_file), "format": {"type": "text"}},
    }
    if impersonate:
        info["service_account_impersonation_url"] = (
            f"{gcp.endpoints['iamcredentials']}/v1/projects/-/serviceAccounts/"
            f"{impersonate}:generateAccessToken"
        )
    made: identity_pool.Credentials = identity_pool.Credentials.from_info(  # type: ignore[no-untyped-call]
        info, scopes=[SCOPE]
    )
    return made


def session(creds: identity_pool.Credentials, ca_file: str) -> AuthorizedSession:
    """google-auth's session trusting only the stand-in's CA (not $REQUESTS_CA_BUNDLE)."""
    refresher = requests.Session()
    authorized = AuthorizedSession(creds, auth_request=Request(refresher))  # type: ignore[no-untyped-call]
    for each in (refresher, authorized):
        each.verify, each.trust_env = ca_file, False
    return authorized


def token_file(tmp_path: Path, issuer: Issuer, gcp: GcpServer, **mint: Any) -> Path:
    path = tmp_path / "token"
    claims = {"namespace": "app", "service_account": "app", "audience": gcp.audience} | mint
    path.write_text(issuer.mint(**claims))
    return path


def access(gcp: GcpServer, authorized: AuthorizedSession, name: str) -> requests.Response:
    url = f"{gcp.endpoints['secretmanager']}/v1/projects/{PROJECT}/secrets/{name}/versions/latest"
    return authorized.get(f"{url}:access")


@pytest.mark.parametrize(
    ("impersonate", "name", "value"),
    [
        pytest.param(None, "direct", b"direct-value", id="federated-principal"),
        pytest.param(SA, "impersonated", b"sa-value", id="impersonated-service-account"),
    ],
)
def test_google_auth_reads_through_the_standin(
    gcp: GcpServer, issuer: Issuer, tmp_path: Path, ca_file: str,
    impersonate: str | None, name: str, value: bytes,
) -> None:  # fmt: skip
    before = gcp.exchanges, gcp.impersonations
    creds = credentials(gcp, token_file(tmp_path, issuer, gcp), impersonate=impersonate)
    answer = access(gcp, session(creds, ca_file), name)
    assert answer.status_code == 200, answer.text
    assert base64.b64decode(answer.json()["payload"]["data"]) == value
    assert answer.json()["payload"]["dataCrc32c"].isdigit()
    assert (gcp.exchanges, gcp.impersonations) == (before[0] + 1, before[1] + bool(impersonate))
    assert creds.expiry is not None  # google-auth understood the token's lifetime


@pytest.mark.parametrize(
    ("mint", "impersonate", "error", "words"),
    [
        pytest.param({"audience": "sts.amazonaws.com"}, None, OAuthError,
                     ["invalid_grant", "audience", "[sts.amazonaws.com]"], id="wrong-audience"),
        pytest.param({"now": 0}, None, OAuthError, ["invalid_grant", "expired"],
                     id="expired-token"),
        pytest.param({"service_account": "other"}, SA, RefreshError,
                     ["iam.serviceAccounts.getAccessToken"], id="not-allowed-to-impersonate"),
    ],
)  # fmt: skip
def test_login_refusals_reach_google_auth(
    gcp: GcpServer, issuer: Issuer, tmp_path: Path, ca_file: str,
    mint: dict[str, Any], impersonate: str | None, error: type[Exception], words: list[str],
) -> None:  # fmt: skip
    creds = credentials(gcp, token_file(tmp_path, issuer, gcp, **mint), impersonate=impersonate)
    with pytest.raises(error) as refused:
        access(gcp, session(creds, ca_file), "direct")
    for word in words:
        assert word in str(refused.value)


def test_wrong_issuer_key_is_refused(gcp: GcpServer, tmp_path: Path, ca_file: str) -> None:
    impostor = Issuer()  # same issuer URL, another key: not in the provider's JWKS
    creds = credentials(gcp, token_file(tmp_path, impostor, gcp))
    with pytest.raises(OAuthError, match="Invalid JWT signature"):
        access(gcp, session(creds, ca_file), "direct")


@pytest.mark.parametrize(
    ("name", "status", "google_status"),
    [
        pytest.param("nobody", 403, "PERMISSION_DENIED", id="no-binding"),
        pytest.param("missing", 403, "PERMISSION_DENIED", id="missing-secret-is-403-too"),
    ],
)
def test_access_refusals_are_googles(
    gcp: GcpServer, issuer: Issuer, tmp_path: Path, ca_file: str,
    name: str, status: int, google_status: str,
) -> None:  # fmt: skip
    answer = access(
        gcp, session(credentials(gcp, token_file(tmp_path, issuer, gcp)), ca_file), name
    )
    assert answer.status_code == status
    assert answer.json()["error"]["status"] == google_status
    assert f"projects/{PROJECT}/secrets/{name}/versions/latest" in answer.json()["error"]["message"]


def test_disabled_version_and_unknown_url(
    gcp: GcpServer, issuer: Issuer, tmp_path: Path, ca_file: str
) -> None:
    gcp.add_version("toggled", b"v1")
    gcp.bind_accessor("toggled", gcp.principal("app", "app"))
    gcp.set_state("toggled", 1, "DISABLED")
    authorized = session(credentials(gcp, token_file(tmp_path, issuer, gcp)), ca_file)
    answer = access(gcp, authorized, "toggled")
    assert (answer.status_code, answer.json()["error"]["status"]) == (400, "FAILED_PRECONDITION")
    unknown = authorized.get(f"{gcp.endpoints['secretmanager']}/v1/nowhere")
    assert unknown.status_code == 404
    assert unknown.headers["Content-Type"].startswith("text/html")


def test_an_expired_access_token_is_refreshed_by_google_auth(
    gcp: GcpServer, issuer: Issuer, tmp_path: Path, ca_file: str
) -> None:
    """401 for a token the stand-in no longer knows: google-auth refreshes and retries."""
    authorized = session(credentials(gcp, token_file(tmp_path, issuer, gcp)), ca_file)
    assert access(gcp, authorized, "direct").status_code == 200
    before = gcp.exchanges
    gcp.expire_tokens()
    assert access(gcp, authorized, "direct").status_code == 200
    assert gcp.exchanges == before + 1
