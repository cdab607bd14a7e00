"""The azure store against the Entra and Key Vault stand-in (tests/azureserver.py), which
Microsoft's own SDKs accept (test_azure_standin.py).

Every read logs in with a projected-token-shaped JWT as the client assertion of an app
federated with the test issuer, then gets secrets over HTTPS with the CA checked.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import Issuer
from sidecar.agent import Agent
from sidecar.auth import TokenFile
from sidecar.config import AzureStore, parse
from sidecar.errors import (
    AgentError,
    ConfigError,
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    StoreUnavailable,
    TokenError,
)
from sidecar.logs import Log
from sidecar.stores.azure import AzureSecretStore
from tests.azureserver import AUDIENCE, AzureServer, FederatedCredential
from tests.polling import wait_for
from tests.sidecar.agent_helpers import (
    agent_argv,
    agent_env,
    error_line,
    run_agent,
    snapshot,
    temps,
)
from tests.sidecar.inproc import make_agent, records

SUBJECT = "system:serviceaccount:app:app"
VALUE = "v4lue-that-must-never-show"


@dataclass
class Azure:
    server: AzureServer
    reader: str  # Key Vault Secrets User on the vault
    unassigned: str  # federated, no role assignment


def start_azure(issuer: Issuer) -> Azure:
    server = AzureServer(issuer)
    server.start()
    federated = FederatedCredential(issuer.issuer, SUBJECT)
    reader, unassigned = server.add_app(None, federated), server.add_app(None, federated)
    server.grant(reader)
    return Azure(server, reader, unassigned)


@pytest.fixture(scope="module")
def azure(issuer: Issuer) -> Iterator[Azure]:
    started = start_azure(issuer)
    yield started
    started.server.stop()


def store_config(server: AzureServer, **overrides: Any) -> dict[str, Any]:
    """The store entry (camelCase, as in LATCHKEY_CONFIG) pointing at the stand-in."""
    return {
        "kind": "azure",
        "vaultUrl": server.vault_url,
        "tenantId": server.tenant,
        "clientId": str(uuid.UUID(int=1)),  # an app nobody registered: the role names one
        "authorityHost": server.authority_host,
        "caBundle": server.ca_pem,
    } | overrides


@pytest.fixture
def token_path(tmp_path: Path, issuer: Issuer) -> Path:
    path = tmp_path / "token"
    path.write_text(issuer.mint(namespace="app", service_account="app", audience=AUDIENCE))
    return path


StoreFactory = Callable[..., AzureSecretStore]


@pytest.fixture
def make_store(azure: Azure, token_path: Path, logs: io.StringIO) -> Iterator[StoreFactory]:
    made: list[AzureSecretStore] = []

    def make(role: str | None = None, **options: Any) -> AzureSecretStore:
        config = parse(AzureStore, store_config(azure.server, **options.pop("store", {})))
        store = AzureSecretStore(
            config,
            role=azure.reader if role is None else role,
            token_file=TokenFile(options.pop("token_path", token_path)),
            log=Log(logs),
            **options,
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close(revoke=True)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- reads ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fields", "scalar"),
    [
        pytest.param('{"user": "app", "port": 5432}', {"user": "app", "port": 5432}, False,
                     id="json-object"),
        pytest.param("hunter2", {"value": "hunter2"}, True, id="plain-string"),
        pytest.param("[1, 2]", {"value": "[1, 2]"}, True, id="json-array-raw"),
        pytest.param("line one\nline two\n", {"value": "line one\nline two\n"}, True,
                     id="multi-line-pem-like"),
    ],
)  # fmt: skip
def test_values(
    azure: Azure, make_store: StoreFactory, value: str, fields: dict[str, Any], scalar: bool
) -> None:
    name = unique("value")
    azure.server.set_secret(name, value)
    secret = make_store().read(name)
    assert (secret.path, dict(secret.fields), secret.scalar, secret.lease) == (
        name, fields, scalar, None
    )  # fmt: skip


def test_versions_current_and_pinned(azure: Azure, make_store: StoreFactory) -> None:
    name = unique("versioned")
    first = azure.server.set_secret(name, "v1")
    azure.server.set_secret(name, "v2")
    store = make_store()
    assert store.read(name).fields == {"value": "v2"}
    assert store.read(f"{name}/{first}").fields == {"value": "v1"}
    azure.server.set_secret(name, "v3")
    assert store.read(name).fields == {"value": "v3"}, "a new version is read at once"


@pytest.mark.parametrize("slash", ["", "/"], ids=["no-trailing-slash", "trailing-slash"])
def test_authority_host_and_vault_url_with_or_without_slash(
    azure: Azure, make_store: StoreFactory, slash: str
) -> None:
    name = unique("slash")
    azure.server.set_secret(name, "ok")
    store = make_store(
        store={
            "authorityHost": azure.server.authority_host + slash,
            "vaultUrl": azure.server.vault_url + slash,
        }
    )
    assert store.read(name).fields == {"value": "ok"}


def test_the_role_overrides_the_stores_client_id(azure: Azure, make_store: StoreFactory) -> None:
    """No role: the store's clientId logs in; a role names another client."""
    name = unique("by-store-client")
    azure.server.set_secret(name, "s")
    before = azure.server.issued(azure.reader)
    assert make_store("", store={"clientId": azure.reader}).read(name).fields == {"value": "s"}
    assert azure.server.issued(azure.reader) == before + 1


def test_a_role_that_is_not_a_guid_is_a_config_error(make_store: StoreFactory) -> None:
    with pytest.raises(ConfigError, match="'my-app' is not a client id"):
        make_store("my-app")


# --- errors: each names what to fix, never a value or a token ---------------------------


@pytest.fixture(scope="module")
def guarded(azure: Azure) -> dict[str, str]:
    """A secret holding VALUE with an older, disabled version; and a disabled one."""
    name, disabled = unique("guarded"), unique("disabled")
    old = azure.server.set_secret(name, VALUE)
    azure.server.set_secret(name, VALUE)
    azure.server.disable(name, old)
    azure.server.set_secret(disabled, VALUE)
    azure.server.disable(disabled)
    return {"name": name, "old": old, "disabled": disabled}


@pytest.mark.parametrize(
    ("who", "path", "error", "words"),
    [
        pytest.param("unassigned", "{name}", PermissionDenied,
                     ["client {unassigned}", "secret {name}", "Key Vault Secrets User",
                      "az role assignment create", "ForbiddenByRbac"], id="no-role-assignment"),
        pytest.param("reader", "nope-{name}", SecretNotFound,
                     ["no secret nope-{name} in", "SecretNotFound"],
                     id="missing-secret"),
        pytest.param("reader", "{name}/" + "0" * 32, SecretNotFound,
                     ["no version " + "0" * 32 + " of secret {name}", "was not found"],
                     id="missing-version"),
        pytest.param("reader", "{name}/{old}", SecretNotFound,
                     ["version {old} of secret {name}", "is disabled", "SecretDisabled"],
                     id="disabled-version"),
        pytest.param("reader", "{disabled}", SecretNotFound,
                     ["current version of secret {disabled}", "is disabled"],
                     id="disabled-current-version"),
        pytest.param("reader", "bad_name", ConfigError,
                     ["'bad_name'", "valid forms"], id="invalid-path"),
    ],
)  # fmt: skip
def test_read_errors(
    azure: Azure, make_store: StoreFactory, logs: io.StringIO, guarded: dict[str, str],
    who: str, path: str, error: type[AgentError], words: list[str],
) -> None:  # fmt: skip
    names = guarded | {"unassigned": azure.unassigned}
    store = make_store(getattr(azure, who))
    with pytest.raises(error) as caught:
        store.read(path.format(**names))
    message = str(caught.value)
    for word in words:
        assert word.format(**names) in message
    assert azure.server.vault_url in message or error is ConfigError
    assert VALUE not in message + logs.getvalue()


def test_an_invalid_path_fails_before_any_login(azure: Azure, make_store: StoreFactory) -> None:
    before = azure.server.issued(azure.reader)
    with pytest.raises(ConfigError):
        make_store().read("a/b/c")
    assert azure.server.issued(azure.reader) == before


def test_a_vault_url_that_is_no_key_vault(azure: Azure, make_store: StoreFactory) -> None:
    """Entra's host answers /secrets/... with an HTML 404: said so, no body shown."""
    store = make_store(store={"vaultUrl": azure.server.authority_host})
    with pytest.raises(SecretNotFound) as caught:
        store.read("db")
    message = str(caught.value)
    assert "text/html body, not the API's JSON error" in message
    assert "is vaultUrl a Key Vault?" in message
    assert "<html>" not in message


def _token(issuer: Issuer, **claims: Any) -> str:
    options = {"namespace": "app", "service_account": "app", "audience": AUDIENCE} | claims
    return issuer.mint(**options)


UNKNOWN = str(uuid.UUID(int=7))


@pytest.mark.parametrize(
    ("token", "role", "store", "error", "words"),
    [
        pytest.param("other-subject", "", {}, LoginDenied,
                     ["no federated identity credential of client {reader}", "tenant {tenant}",
                      "issuer {issuer}", "subject system:serviceaccount:app:other",
                      "audience api://AzureADTokenExchange", "AADSTS700213",
                      "--subject system:serviceaccount:app:other --audiences api://AzureADTokenExchange"],
                     id="subject-not-federated"),
        pytest.param("wrong-audience", "", {}, LoginDenied,
                     ["no federated identity credential", "audience openbao", "AADSTS70021",
                      "subject system:serviceaccount:app:app"], id="wrong-audience"),
        pytest.param("other-issuer", "", {}, LoginDenied,
                     ["issuer https://elsewhere.example", "AADSTS700211"], id="other-issuer"),
        pytest.param("good", UNKNOWN, {}, LoginDenied,
                     [f"no application or managed identity with client id {UNKNOWN}",
                      "AADSTS700016"], id="unknown-client"),
        pytest.param("good", "", {"tenantId": UNKNOWN}, LoginDenied,
                     [f"no tenant {UNKNOWN}", "authorityHost", "AADSTS90002"],
                     id="unknown-tenant"),
        pytest.param("expired", "", {}, LoginDenied,
                     ["expired or not yet valid", "node's clock", "AADSTS700024"], id="expired"),
        pytest.param("forged", "", {}, LoginDenied,
                     ["denied client {reader}", "AADSTS700027"], id="forged-signature"),
        pytest.param(None, "", {}, TokenError, ["does not exist"], id="no-token-file"),
    ],
)  # fmt: skip
def test_login_errors(
    azure: Azure, make_store: StoreFactory, issuer: Issuer, tmp_path: Path,
    token: str | None, role: str, store: dict[str, str], error: type[AgentError],
    words: list[str],
) -> None:  # fmt: skip
    tokens = {
        "good": _token(issuer),
        "other-subject": _token(issuer, service_account="other"),
        "wrong-audience": _token(issuer, audience="openbao"),
        "other-issuer": _token(Issuer(issuer="https://elsewhere.example")),
        "expired": _token(issuer, ttl=60, now=time.time() - 3600),
        "forged": _token(Issuer()),
    }
    path = tmp_path / "login-token"
    if token is not None:
        path.write_text(tokens[token])
    made = make_store(role or azure.reader, token_path=path, store=store)
    with pytest.raises(error) as caught:
        made.login()
    message = str(caught.value)
    names = {"reader": azure.reader, "tenant": azure.server.tenant, "issuer": issuer.issuer}
    for word in words:
        assert word.format(**names) in message
    assert all(t not in message for t in tokens.values())


def test_entra_unreachable(azure: Azure, make_store: StoreFactory) -> None:
    from hack.localstore import free_port

    store = make_store(store={"authorityHost": f"https://localhost:{free_port()}"})
    with pytest.raises(StoreUnavailable, match="unreachable logging in as client"):
        store.login()


# --- access tokens: cached, refreshed, bought again on rotation and on a 401 -------------


def test_one_token_for_many_reads(azure: Azure, make_store: StoreFactory) -> None:
    name = unique("cached")
    azure.server.set_secret(name, "c")
    store = make_store()
    before = azure.server.issued(azure.reader)
    for _ in range(5):
        assert store.read(name).fields == {"value": "c"}
    assert azure.server.issued(azure.reader) == before + 1
    assert store.refresh_at > time.monotonic() + 3000  # an hour, refreshed 5 min early


def test_token_refreshed_before_expiry(azure: Azure, make_store: StoreFactory) -> None:
    name = unique("refresh")
    azure.server.set_secret(name, "x")
    now = [time.monotonic()]
    store = make_store(clock=lambda: now[0])
    before = azure.server.issued(azure.reader)
    store.read(name)
    refresh_at = store.refresh_at
    assert store.maintain() == refresh_at  # not due: nothing happens
    assert azure.server.issued(azure.reader) == before + 1
    now[0] = refresh_at + 1
    assert store.read(name).fields == {"value": "x"}
    assert azure.server.issued(azure.reader) == before + 2
    assert store.refresh_at > now[0]


def test_token_file_rotation_exchanges_again(
    azure: Azure, make_store: StoreFactory, issuer: Issuer, token_path: Path, logs: io.StringIO
) -> None:
    store = make_store()
    store.login()
    before = azure.server.issued(azure.reader)
    store.maintain()
    assert azure.server.issued(azure.reader) == before
    token_path.write_text(_token(issuer, pod="app-1"))
    store.maintain()
    assert azure.server.issued(azure.reader) == before + 1
    assert "token file rotated" in logs.getvalue()


def test_a_401_logs_in_again_once(issuer: Issuer, token_path: Path, logs: io.StringIO) -> None:
    """Entra's signing key rolled: Key Vault refuses the token with its challenge; the store
    buys one new token and the read succeeds. Its own stand-in: the key is the server's."""
    own = start_azure(issuer)
    try:
        name = unique("rolled")
        own.server.set_secret(name, "r")
        config = parse(AzureStore, store_config(own.server, clientId=own.reader))
        store = AzureSecretStore(config, role="", token_file=TokenFile(token_path), log=Log(logs))
        assert store.read(name).fields == {"value": "r"}
        own.server.roll_signing_key()
        assert store.read(name).fields == {"value": "r"}
        assert own.server.issued(own.reader) == 2
        assert "credentials rejected; logging in again" in logs.getvalue()
        store.close(revoke=True)
    finally:
        own.server.stop()


# --- the agent: CLI and long-running -----------------------------------------------------


def agent_config(server: AzureServer, token_path: Path, role: str, **extra: Any) -> dict[str, Any]:
    return {
        "store": store_config(server),
        "role": role,
        "tokenPath": str(token_path),
        "secretsDir": str(token_path.parent / "secrets"),
        "stateDir": str(token_path.parent / "state"),
        **extra,
    }


def test_cli_once_writes_files_from_key_vault(azure: Azure, token_path: Path) -> None:
    name, plain = unique("cli-db"), unique("cli-plain")
    azure.server.set_secret(name, json.dumps({"username": "app", "password": VALUE}))
    azure.server.set_secret(plain, VALUE)
    files = [
        {"name": "db.json", "path": name},
        {"name": "password", "path": name, "key": "password"},
        {"name": "plain", "path": plain},
    ]
    done = run_agent("--once", config=agent_config(azure.server, token_path, azure.reader,
                                                   files=files))  # fmt: skip
    assert done.returncode == 0, done.stderr
    secrets = token_path.parent / "secrets"
    assert json.loads((secrets / "db.json").read_text()) == {"username": "app", "password": VALUE}
    assert (secrets / "password").read_text() == VALUE
    assert (secrets / "plain").read_text() == VALUE
    assert VALUE not in done.stdout + done.stderr


def test_cli_once_without_role_assignment_exits_with_one_clear_line(
    azure: Azure, token_path: Path, guarded: dict[str, str]
) -> None:
    files = [{"name": "guarded", "path": guarded["name"]}]
    config = agent_config(azure.server, token_path, azure.unassigned, files=files)
    done = run_agent("--once", "--deadline", "5", config=config)
    assert done.returncode == PermissionDenied.exit_code
    line = error_line(done.stderr)
    assert line["error"] == "PermissionDenied"
    assert azure.unassigned in line["msg"]
    assert "Key Vault Secrets User" in line["msg"]
    assert "Traceback" not in done.stderr
    assert VALUE not in done.stdout + done.stderr
    assert not (token_path.parent / "secrets" / "guarded").exists()


RETRYING = "keeping the last good files; will retry"


@pytest.mark.parametrize("fault", ["revoked", "gone"])
def test_long_running_agent_keeps_its_files(
    issuer: Issuer, token_path: Path, running: Callable[[Agent], threading.Event], fault: str
) -> None:
    """Access revoked (403) or the services gone: the last good files stay, same inode."""
    own = start_azure(issuer)
    try:
        name = unique("kept")
        own.server.set_secret(name, VALUE)
        files = [{"name": "pw", "path": name}]
        config = agent_config(own.server, token_path, own.reader, files=files, refreshSeconds=1)
        agent, _, stream = make_agent(config, timeout=0.5)
        running(agent)
        secrets = token_path.parent / "secrets"
        wait_for(lambda: (token_path.parent / "state" / "ready").exists())
        before = snapshot(secrets)
        if fault == "revoked":
            own.server.revoke(own.reader)
        else:
            own.server.stop()
        wait_for(lambda: sum(r["msg"] == RETRYING for r in records(stream)) >= 2)
        assert snapshot(secrets) == before
        assert temps(secrets) == []
        errors = [r["error"] for r in records(stream) if r["msg"] == RETRYING]
        assert ("may not get secret" if fault == "revoked" else "unreachable") in errors[0]
        assert VALUE not in stream.getvalue()
    finally:
        own.server.stop()


def test_no_azure_sdk_on_the_agent_path() -> None:
    code = (
        "import sys, json\n"
        "from sidecar.config import AgentConfig, parse\n"
        "from sidecar.logs import Log\n"
        "from sidecar.stores import open_store\n"
        "open_store(parse(AgentConfig, json.loads(sys.argv[1])), log=Log())\n"
        "print('sidecar.stores.azure' in sys.modules, any(m.startswith('azure') for m in "
        "sys.modules), 'botocore' in sys.modules)\n"
    )
    store = {
        "kind": "azure", "vaultUrl": "https://v.vault.azure.net",
        "tenantId": str(uuid.UUID(int=3)), "clientId": str(uuid.UUID(int=4)),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps({"store": store})],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["True", "False", "False"]


def test_standalone_from_azure_workload_identity_env(
    azure: Azure, token_path: Path, tmp_path: Path
) -> None:
    """On AKS with Azure Workload Identity's webhook: its env variables and flags alone."""
    name = unique("env-db")
    azure.server.set_secret(name, json.dumps({"password": VALUE}))
    (tmp_path / "ca.pem").write_text(azure.server.ca_pem, encoding="utf-8")
    env = agent_env() | {
        "AZURE_TENANT_ID": azure.server.tenant,
        "AZURE_CLIENT_ID": azure.reader,
        "AZURE_FEDERATED_TOKEN_FILE": str(token_path),
        "AZURE_AUTHORITY_HOST": azure.server.authority_host + "/",
    }
    argv = agent_argv(
        "--once", "--deadline", "5", "--azure-vault-url", azure.server.vault_url,
        "--ca-file", str(tmp_path / "ca.pem"), "--secret", f"password={name}#password",
        "--secrets-dir", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "password").read_text() == VALUE
    assert azure.reader in done.stderr  # logged in as $AZURE_CLIENT_ID
    assert VALUE not in done.stdout + done.stderr
