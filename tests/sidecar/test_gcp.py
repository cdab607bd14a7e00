"""The gcp store against the Google stand-in (tests/gcpserver.py, proved faithful with
google-auth in test_gcp_standin.py): STS exchange with a projected-token-shaped JWT,
optional impersonation, Secret Manager reads checked by CRC-32C, and every refusal as
a message a platform engineer can act on, never holding a value or a token."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import Issuer
from sidecar.agent import Agent
from sidecar.auth import TokenFile
from sidecar.config import GcpStore, parse
from sidecar.errors import (
    AgentError,
    ConfigError,
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.stores.gcp import GcpSecretStore
from tests.gcpserver import GcpServer
from tests.polling import wait_for
from tests.sidecar.agent_helpers import error_line, run_agent, snapshot
from tests.sidecar.inproc import make_agent, records

SA = "reader@latchkey-test.iam.gserviceaccount.com"
VALUE = "v4lue-that-must-never-show"
SUBJECT = "system:serviceaccount:app:app"


@pytest.fixture(scope="module")
def gcp(issuer: Issuer) -> Iterator[GcpServer]:
    """The stand-in, the pod's subject allowed to impersonate SA and to read directly."""
    server = GcpServer(issuer)
    server.start()
    server.allow_impersonation(SA, server.principal("app", "app"))
    yield server
    server.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def readable(gcp: GcpServer, *values: bytes | str) -> str:
    """A new secret with these versions, readable by SA and by the federated principal."""
    name = unique("app")
    for value in values:
        gcp.add_version(name, value)
    gcp.bind_accessor(name, f"serviceAccount:{SA}")
    gcp.bind_accessor(name, gcp.principal("app", "app"))
    return name


@pytest.fixture
def token_path(tmp_path: Path, issuer: Issuer, gcp: GcpServer) -> Path:
    path = tmp_path / "token"
    path.write_text(issuer.mint(namespace="app", service_account="app", audience=gcp.audience))
    return path


StoreFactory = Callable[..., GcpSecretStore]


@pytest.fixture
def make_store(gcp: GcpServer, token_path: Path, logs: io.StringIO) -> Iterator[StoreFactory]:
    made: list[GcpSecretStore] = []

    def make(role: str = SA, **options: Any) -> GcpSecretStore:
        config = parse(GcpStore, gcp.store(**options.pop("store", {})))
        store = GcpSecretStore(
            config, role=role, token_file=TokenFile(options.pop("token_path", token_path)),
            log=Log(logs), **options,
        )  # fmt: skip
        made.append(store)
        return store

    yield make
    for store in made:
        store.close(revoke=True)


# --- values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("versions", "path", "fields", "scalar"),
    [
        pytest.param(['{"user": "app", "port": 5432}'], "{name}",
                     {"user": "app", "port": 5432}, False, id="json-object"),
        pytest.param(["hunter2"], "{name}", {"value": "hunter2"}, True, id="plain-text"),
        pytest.param(["[1, 2]"], "{name}", {"value": "[1, 2]"}, True, id="json-array-raw"),
        pytest.param([b"\x00\xffk"], "{name}", {"value": b"\x00\xffk"}, True, id="binary"),
        pytest.param(["one", "two"], "{name}", {"value": "two"}, True, id="latest-is-newest"),
        pytest.param(["one", "two"], "{name}@1", {"value": "one"}, True, id="version-number"),
        pytest.param(["one", "two"], "{name}@latest", {"value": "two"}, True, id="latest"),
        pytest.param(["one", "two"], "projects/latchkey-test/secrets/{name}/versions/1",
                     {"value": "one"}, True, id="full-name"),
    ],
)  # fmt: skip
def test_values(
    gcp: GcpServer, make_store: StoreFactory,
    versions: list[str | bytes], path: str, fields: dict[str, Any], scalar: bool,
) -> None:  # fmt: skip
    name = readable(gcp, *versions)
    secret = make_store().read(path.format(name=name))
    assert (dict(secret.fields), secret.scalar, secret.lease) == (fields, scalar, None)
    assert secret.path == path.format(name=name)


@pytest.mark.parametrize("role", [pytest.param(SA, id="impersonated"),
                                  pytest.param("", id="federated-principal")])  # fmt: skip
def test_login_with_and_without_impersonation(
    gcp: GcpServer, make_store: StoreFactory, logs: io.StringIO, role: str
) -> None:
    name = readable(gcp, "v")
    before = (gcp.exchanges, gcp.impersonations)
    store = make_store(role)
    assert store.read(name).fields == {"value": "v"}
    assert (gcp.exchanges, gcp.impersonations) == (before[0] + 1, before[1] + bool(role))
    record = [r for r in map(json.loads, logs.getvalue().splitlines()) if r["msg"] == "logged in"]
    assert record[-1]["principal"] == (role or gcp.principal("app", "app"))
    assert record[-1]["expires_in"] > 3000


def test_alias_and_a_new_version(gcp: GcpServer, make_store: StoreFactory) -> None:
    name = readable(gcp, "first")
    gcp.set_alias(name, "stable", 1)
    store = make_store()
    gcp.add_version(name, "second")
    assert store.read(f"{name}@stable").fields == {"value": "first"}
    assert store.read(name).fields == {"value": "second"}


def test_a_corrupted_payload_is_retried_not_written(
    gcp: GcpServer, make_store: StoreFactory, logs: io.StringIO
) -> None:
    name = readable(gcp, VALUE)
    store = make_store()
    gcp.corrupt = 1
    with pytest.raises(StoreUnavailable, match="CRC-32C") as caught:
        store.read(name)
    assert name in str(caught.value)
    assert StoreUnavailable.retryable
    assert store.read(name).fields == {"value": VALUE}
    assert VALUE not in str(caught.value) + logs.getvalue()


# --- refusals: each names who, what and the fix, never a value or a token ---------------


def _minted(issuer: Issuer, gcp: GcpServer, case: str) -> str:
    base: dict[str, Any] = {"namespace": "app", "service_account": "app", "audience": gcp.audience}
    changes: dict[str, dict[str, Any]] = {
        "good": {}, "wrong-audience": {"audience": "sts.amazonaws.com"}, "expired": {"now": 0},
        "stranger": {"service_account": "stranger"},
    }  # fmt: skip
    if case == "wrong-key":
        return Issuer().mint(**base)
    return issuer.mint(**(base | changes[case]))


@pytest.mark.parametrize(
    ("token", "role", "store", "words"),
    [
        pytest.param("wrong-audience", SA, {}, [
            "invalid_grant", "//iam.googleapis.com/projects/", "audience sts.amazonaws.com",
            "issuer https://kubernetes.default.svc.cluster.local", f"subject {SUBJECT}"],
            id="wrong-audience"),
        pytest.param("expired", SA, {}, ["expired", f"subject {SUBJECT}"], id="expired-token"),
        pytest.param("wrong-key", SA, {}, ["Invalid JWT signature"], id="signed-by-another-key"),
        pytest.param("good", SA, {"workloadIdentityProvider":
                     "projects/123456789012/locations/global/workloadIdentityPools/latchkey-pool"
                     "/providers/nobody"}, ["invalid_target", "providers/nobody"],
                     id="unknown-provider"),
        pytest.param("stranger", SA, {}, [
            "principal://iam.googleapis.com/projects/123456789012/locations/global/"
            "workloadIdentityPools/latchkey-pool/subject/system:serviceaccount:app:stranger",
            SA, "roles/iam.workloadIdentityUser", "iam.serviceAccounts.getAccessToken"],
            id="subject-may-not-impersonate"),
        pytest.param("good", "nobody@latchkey-test.iam.gserviceaccount.com", {}, [
            "nobody@latchkey-test.iam.gserviceaccount.com", "roles/iam.workloadIdentityUser"],
            id="service-account-not-granted"),
    ],
)  # fmt: skip
def test_login_refusals(
    gcp: GcpServer, issuer: Issuer, make_store: StoreFactory, tmp_path: Path, logs: io.StringIO,
    token: str, role: str, store: dict[str, Any], words: list[str],
) -> None:  # fmt: skip
    path = tmp_path / "login-token"
    path.write_text(minted := _minted(issuer, gcp, token))
    with pytest.raises(LoginDenied) as caught:
        make_store(role, token_path=path, store=store).login()
    message = str(caught.value)
    for word in words:
        assert word in message
    assert minted not in message + logs.getvalue()
    assert minted.split(".")[2] not in message  # not even the signature


@pytest.mark.parametrize(
    ("case", "path", "error", "words"),
    [
        pytest.param("unbound", "{name}", PermissionDenied, [
            SA, "projects/latchkey-test/secrets/{name}/versions/latest",
            "roles/secretmanager.secretAccessor", "both"], id="no-binding"),
        pytest.param("missing", "{name}", PermissionDenied, [
            "projects/latchkey-test/secrets/{name}/versions/latest", "does not exist"],
            id="missing-secret-without-project-access"),
        pytest.param("bound", "{name}@7", SecretNotFound, [
            "projects/latchkey-test/secrets/{name}/versions/7", "NOT_FOUND"],
            id="missing-version"),
        pytest.param("disabled", "{name}@1", SecretNotFound, [
            "version 1 of secret {name}", "DISABLED", "disabled or destroyed"], id="disabled"),
        pytest.param("destroyed", "{name}", SecretNotFound, [
            "version latest of secret {name}", "DESTROYED"], id="destroyed-latest"),
        pytest.param("bound", "projects/latchkey-test/secrets/{name}", ConfigError, [
            "valid forms"], id="not-a-gcp-path"),
    ],
)  # fmt: skip
def test_read_refusals(
    gcp: GcpServer, make_store: StoreFactory, logs: io.StringIO,
    case: str, path: str, error: type[AgentError], words: list[str],
) -> None:  # fmt: skip
    name = unique("guarded")
    if case != "missing":
        gcp.add_version(name, VALUE)
    if case not in ("unbound", "missing"):
        gcp.bind_accessor(name, f"serviceAccount:{SA}")
    if case in ("disabled", "destroyed"):
        gcp.set_state(name, 1, case.upper())
    with pytest.raises(error) as caught:
        make_store().read(path.format(name=name))
    for word in words:
        assert word.format(name=name) in str(caught.value)
    assert VALUE not in str(caught.value) + logs.getvalue()


def test_missing_secret_with_project_access_is_not_found(
    gcp: GcpServer, make_store: StoreFactory, issuer: Issuer, tmp_path: Path
) -> None:
    member = gcp.principal("app", "lister")
    gcp.bind_project_accessor(member)
    path = tmp_path / "lister-token"
    path.write_text(issuer.mint(namespace="app", service_account="lister", audience=gcp.audience))
    with pytest.raises(SecretNotFound) as caught:
        make_store("", token_path=path).read("nowhere")
    assert "nothing at projects/latchkey-test/secrets/nowhere/versions/latest" in str(caught.value)


def test_a_wrong_endpoint_answering_html_is_named(gcp: GcpServer, make_store: StoreFactory) -> None:
    endpoints = gcp.endpoints | {"secretmanager": f"{gcp.base}/not-secret-manager"}
    store = make_store(store={"endpoints": endpoints})
    with pytest.raises(SecretNotFound) as caught:
        store.read(readable(gcp, VALUE))
    message = str(caught.value)
    assert "text/html body, not the API's JSON error" in message
    assert "endpoints.secretmanager" in message
    assert "<html" not in message


# --- the access token: bought once, refreshed, bought again on rotation and on 401 ------


def test_one_exchange_for_many_reads(gcp: GcpServer, make_store: StoreFactory) -> None:
    name = readable(gcp, "v")
    store = make_store()
    before = gcp.exchanges
    for _ in range(10):
        store.read(name)
    assert gcp.exchanges == before + 1


def test_refreshed_before_expiry(gcp: GcpServer, make_store: StoreFactory) -> None:
    name = readable(gcp, "v")
    now = [1000.0]
    store = make_store(clock=lambda: now[0])
    store.read(name)
    before = gcp.exchanges
    assert store.maintain() == store.refresh_at  # not due: nothing happens
    assert gcp.exchanges == before
    assert 1000 + 3000 < store.refresh_at < 1000 + 3600
    now[0] = store.refresh_at + 1
    assert store.read(name).fields == {"value": "v"}
    assert gcp.exchanges == before + 1
    assert store.refresh_at > now[0]


def test_token_rotation_exchanges_again(
    gcp: GcpServer, make_store: StoreFactory, issuer: Issuer, token_path: Path, logs: io.StringIO
) -> None:
    store = make_store()
    store.login()
    before = gcp.exchanges
    store.maintain()
    assert gcp.exchanges == before
    token_path.write_text(
        issuer.mint(namespace="app", service_account="app", audience=gcp.audience, pod="app-1")
    )
    store.maintain()
    assert gcp.exchanges == before + 1
    assert "token file rotated" in logs.getvalue()


def test_a_rejected_token_logs_in_again_once(gcp: GcpServer, make_store: StoreFactory) -> None:
    name = readable(gcp, "v")
    store = make_store()
    store.read(name)
    before = gcp.exchanges
    gcp.expire_tokens()
    assert store.read(name).fields == {"value": "v"}
    assert gcp.exchanges == before + 1


# --- through the agent --------------------------------------------------------------------


def _config(
    gcp: GcpServer, token_path: Path, files: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "store": gcp.store(), "role": SA, "tokenPath": str(token_path),
        "secretsDir": str(token_path.parent / "secrets"),
        "stateDir": str(token_path.parent / "state"), "files": files, **extra,
    }  # fmt: skip


def test_cli_once_writes_a_key_and_the_whole_secret(gcp: GcpServer, token_path: Path) -> None:
    name = readable(gcp, json.dumps({"username": "app", "password": VALUE}))
    files = [
        {"name": "db.json", "path": name},
        {"name": "password", "path": name, "key": "password"},
    ]
    done = run_agent("--once", "--deadline", "5", config=_config(gcp, token_path, files))
    assert done.returncode == 0, done.stderr
    secrets = token_path.parent / "secrets"
    assert json.loads((secrets / "db.json").read_text()) == {"username": "app", "password": VALUE}
    assert (secrets / "password").read_text() == VALUE
    assert VALUE not in done.stdout + done.stderr


def test_cli_once_denied_exits_with_one_clear_line(gcp: GcpServer, token_path: Path) -> None:
    name = unique("guarded")
    gcp.add_version(name, VALUE)
    files = [{"name": "x", "path": name}]
    done = run_agent("--once", "--deadline", "5", config=_config(gcp, token_path, files))
    assert done.returncode == PermissionDenied.exit_code
    line = error_line(done.stderr)
    assert line["error"] == "PermissionDenied"
    assert SA in line["msg"]
    assert "roles/secretmanager.secretAccessor" in line["msg"]
    assert "Traceback" not in done.stderr
    assert VALUE not in done.stdout + done.stderr


@pytest.fixture
def own_gcp(issuer: Issuer) -> Iterator[GcpServer]:
    """A stand-in this test may stop: the module's one is shared."""
    server = GcpServer(issuer)
    server.start()
    server.allow_impersonation(SA, server.principal("app", "app"))
    yield server
    server.stop()


@pytest.mark.parametrize("fault", ["access-revoked", "store-gone"])
def test_the_running_agent_keeps_its_last_good_files(
    own_gcp: GcpServer, token_path: Path, running: Callable[[Agent], threading.Event], fault: str
) -> None:
    """A denial or an outage after the first write: files kept byte for byte, retried."""
    server = own_gcp
    name = readable(server, VALUE)
    files = [{"name": "value", "path": name}]
    agent, _, stream = make_agent(_config(server, token_path, files, refreshSeconds=1), timeout=0.5)
    running(agent)
    secrets = token_path.parent / "secrets"
    wait_for(lambda: (token_path.parent / "state" / "ready").exists())
    before = snapshot(secrets)
    server.add_version(name, "what a good read would bring")
    if fault == "access-revoked":
        server.unbind_accessor(name, f"serviceAccount:{SA}")
    else:
        server.stop()
    retrying = "keeping the last good files; will retry"
    wait_for(lambda: any(r["msg"] == retrying for r in records(stream)))
    assert snapshot(secrets) == before
    assert (secrets / "value").read_text() == VALUE
    assert VALUE not in stream.getvalue()


def test_no_google_sdk_or_botocore_on_the_gcp_path(gcp: GcpServer) -> None:
    code = (
        "import sys, json\n"
        "from sidecar.config import AgentConfig, parse\n"
        "from sidecar.logs import Log\n"
        "from sidecar.stores import open_store\n"
        "open_store(parse(AgentConfig, json.loads(sys.argv[1])), log=Log())\n"
        "print(sorted(m for m in ('google.auth', 'botocore', 'sidecar.stores.gcp')"
        " if m in sys.modules))\n"
    )
    config = json.dumps({"store": gcp.store(), "role": SA})
    done = subprocess.run(
        [sys.executable, "-c", code, config], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['sidecar.stores.gcp']"


def test_standalone_with_the_credential_configuration_gcloud_writes(
    gcp: GcpServer, token_path: Path, tmp_path: Path
) -> None:
    """What a user already has: the cred-config file (URLs of the admin's private endpoints,
    here the stand-in's, given by a ``gcp`` store in ``--config``) and flags alone."""
    name = readable(gcp, json.dumps({"password": VALUE}))
    endpoints = gcp.endpoints
    info = {
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": f"//iam.googleapis.com/{gcp.provider}",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": f"{endpoints['sts']}/v1/token",
        "service_account_impersonation_url": f"{endpoints['iamcredentials']}/v1/projects/-/"
        f"serviceAccounts/{SA}:generateAccessToken",
        "credential_source": {"file": str(token_path), "format": {"type": "text"}},
    }
    (tmp_path / "cred.json").write_text(json.dumps(info), encoding="utf-8")
    (tmp_path / "ca.pem").write_text(gcp.ca_pem, encoding="utf-8")
    base = {"store": {"kind": "gcp", "workloadIdentityProvider": gcp.provider,
                      "endpoints": endpoints}}  # fmt: skip
    (tmp_path / "base.json").write_text(json.dumps(base), encoding="utf-8")
    done = run_agent(
        "--once", "--deadline", "5", "--config", str(tmp_path / "base.json"),
        "--gcp-credential-config", str(tmp_path / "cred.json"), "--ca-file",
        str(tmp_path / "ca.pem"), "--gcp-project", "latchkey-test",
        "--secret", f"password={name}#password", "--secrets-dir", str(tmp_path / "out"),
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "password").read_text() == VALUE
    assert SA in done.stderr  # logged in as the impersonated account the file names
    assert VALUE not in done.stdout + done.stderr
