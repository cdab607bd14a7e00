"""The aws store against a real moto server that enforces IAM (tests/motoserver.py).

Every read goes through STS AssumeRoleWithWebIdentity with a projected-token-shaped
JWT, then botocore-signed calls that moto checks against the role's policies.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.localstore import Issuer
from sidecar.auth import TokenFile
from sidecar.config import AwsStore
from sidecar.errors import (
    AgentError,
    ConfigError,
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    TokenError,
)
from sidecar.logs import Log
from sidecar.stores.aws import AwsSecretStore
from tests.motoserver import MotoServer

READ_ACTIONS = ["secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParametersByPath"]
AUDIENCE = "sts.amazonaws.com"


@dataclass
class Aws:
    """The moto server plus what an AWS admin set up once for these tests."""

    server: MotoServer
    provider: str
    reader: str  # may read everything
    ssm_only: str  # may read SSM parameters, not Secrets Manager


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Aws]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    provider = server.add_oidc_provider(issuer.issuer, audience=AUDIENCE)
    reader = server.add_role("reader", provider_arn=provider, actions=READ_ACTIONS)
    ssm_only = server.add_role("ssm-only", provider_arn=provider, actions=["ssm:GetParameter"])
    yield Aws(server, provider, reader, ssm_only)
    server.stop()


@pytest.fixture
def token_path(tmp_path: Path, issuer: Issuer) -> Path:
    path = tmp_path / "token"
    path.write_text(issuer.mint(namespace="app", service_account="app", audience=AUDIENCE))
    return path


StoreFactory = Callable[..., AwsSecretStore]


@pytest.fixture
def make_store(aws: Aws, token_path: Path, logs: io.StringIO) -> Iterator[StoreFactory]:
    made: list[AwsSecretStore] = []

    def make(role: str | None = None, **options: Any) -> AwsSecretStore:
        config = AwsStore(region="us-east-1", endpoint_url=aws.server.endpoint)
        store = AwsSecretStore(
            config,
            role=role or aws.reader,
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


# --- login ----------------------------------------------------------------------------


def test_web_identity_login(aws: Aws, make_store: StoreFactory, logs: io.StringIO) -> None:
    before = aws.server.logins(aws.reader)
    store = make_store()
    store.login()
    assert aws.server.logins(aws.reader) == before + 1
    assert store.refresh_at > time.monotonic() + 3000  # an hour, refreshed 5 min early
    record = json.loads(logs.getvalue().splitlines()[-1])
    assert record["msg"] == "logged in"
    assert record["principal"] == aws.reader  # the role, named as every cloud names it


# --- Secrets Manager and SSM values ---------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "fields", "scalar"),
    [
        pytest.param({"SecretString": '{"user": "app", "port": 5432}'},
                     {"user": "app", "port": 5432}, False, id="json-object"),
        pytest.param({"SecretString": "hunter2"}, {"value": "hunter2"}, True, id="plain-string"),
        pytest.param({"SecretString": "[1, 2]"}, {"value": "[1, 2]"}, True, id="json-array-raw"),
        pytest.param({"SecretString": '"quoted"'}, {"value": '"quoted"'}, True, id="json-str"),
        pytest.param({"SecretBinary": b"\x00\xffk"}, {"value": b"\x00\xffk"}, True, id="binary"),
    ],
)  # fmt: skip
def test_secrets_manager_values(
    aws: Aws, make_store: StoreFactory, seed: dict[str, Any], fields: dict[str, Any], scalar: bool
) -> None:
    name = unique("app/value")
    aws.server.client("secretsmanager").create_secret(Name=name, **seed)
    secret = make_store().read(f"secretsmanager:{name}")
    assert (secret.fields, secret.scalar, secret.lease) == (fields, scalar, None)
    assert secret.path == f"secretsmanager:{name}"


@pytest.mark.parametrize(
    ("kind", "value", "fields", "scalar"),
    [
        pytest.param("String", "plain", {"value": "plain"}, True, id="string"),
        pytest.param("SecureString", "s3cret", {"value": "s3cret"}, True, id="securestring"),
        pytest.param("SecureString", '{"a": "b"}', {"a": "b"}, False, id="securestring-json"),
        pytest.param("StringList", "a,b,c", {"value": "a,b,c"}, True, id="stringlist"),
    ],
)
def test_ssm_parameter_values(
    aws: Aws, make_store: StoreFactory, kind: str, value: str, fields: dict[str, Any], scalar: bool
) -> None:
    name = "/" + unique("app") + "/param"
    aws.server.client("ssm").put_parameter(Name=name, Value=value, Type=kind)
    secret = make_store().read(f"ssm:{name}")
    assert (secret.fields, secret.scalar) == (fields, scalar)


def test_ssm_by_path_reads_one_level_across_pages(aws: Aws, make_store: StoreFactory) -> None:
    prefix = "/" + unique("app")
    ssm = aws.server.client("ssm")
    for i in range(12):  # more than one page of GetParametersByPath (10)
        ssm.put_parameter(Name=f"{prefix}/key{i}", Value=f"v{i}", Type="String")
    ssm.put_parameter(Name=f"{prefix}/secure", Value="decrypted", Type="SecureString")
    ssm.put_parameter(Name=f"{prefix}/deeper/hidden", Value="no", Type="String")
    secret = make_store().read(f"ssm:{prefix}/*")
    expected = {f"key{i}": f"v{i}" for i in range(12)} | {"secure": "decrypted"}
    assert dict(secret.fields) == expected
    assert not secret.scalar


# --- versions and rotation ------------------------------------------------------------


@pytest.fixture(scope="module")
def versioned(aws: Aws) -> dict[str, str]:
    """One secret with three versions: previous (v1), current (v2) and canary (v3)."""
    sm = aws.server.client("secretsmanager")
    name = unique("app/versioned")
    first = sm.create_secret(Name=name, SecretString="v1")["VersionId"]
    sm.put_secret_value(SecretId=name, SecretString="v2")
    sm.put_secret_value(SecretId=name, SecretString="v3", VersionStages=["canary"])
    return {"name": name, "first": first}


@pytest.mark.parametrize(
    ("query", "value"),
    [
        pytest.param("", "v2", id="default-is-current"),
        pytest.param("?version-stage=AWSCURRENT", "v2", id="current"),
        pytest.param("?version-stage=AWSPREVIOUS", "v1", id="previous"),
        pytest.param("?version-stage=canary", "v3", id="custom-stage"),
        pytest.param("?version-id={first}", "v1", id="version-id"),
    ],
)
def test_version_stages_and_ids(
    make_store: StoreFactory, versioned: dict[str, str], query: str, value: str
) -> None:
    path = f"secretsmanager:{versioned['name']}{query.format(first=versioned['first'])}"
    assert make_store().read(path).fields == {"value": value}


def test_rotation_is_picked_up_at_the_next_read(aws: Aws, make_store: StoreFactory) -> None:
    sm, ssm = aws.server.client("secretsmanager"), aws.server.client("ssm")
    name, parameter = unique("app/rotating"), "/" + unique("app") + "/password"
    sm.create_secret(Name=name, SecretString='{"password": "old"}')
    ssm.put_parameter(Name=parameter, Value="old", Type="SecureString")
    store = make_store()
    assert store.read(f"secretsmanager:{name}").fields == {"password": "old"}
    assert store.read(f"ssm:{parameter}").fields == {"value": "old"}
    sm.put_secret_value(SecretId=name, SecretString='{"password": "new"}')
    ssm.put_parameter(Name=parameter, Value="new", Type="SecureString", Overwrite=True)
    assert store.read(f"secretsmanager:{name}").fields == {"password": "new"}
    assert store.read(f"ssm:{parameter}").fields == {"value": "new"}


# --- errors: each names the role or path, never a value --------------------------------

VALUE = "v4lue-that-must-never-show"


@pytest.fixture(scope="module")
def guarded(aws: Aws) -> str:
    """A secret that exists, holding VALUE, for the denial cases."""
    name = unique("app/guarded")
    aws.server.client("secretsmanager").create_secret(Name=name, SecretString=VALUE)
    return name


@pytest.mark.parametrize(
    ("role", "path", "error", "words"),
    [
        pytest.param("reader", "secretsmanager:app/missing", SecretNotFound,
                     ["secretsmanager:app/missing", "ResourceNotFound"], id="missing-secret"),
        pytest.param("reader", "ssm:/app/missing", SecretNotFound,
                     ["ssm:/app/missing", "ParameterNotFound"], id="missing-parameter"),
        pytest.param("reader", "ssm:/nothing/here/*", SecretNotFound,
                     ["no parameters directly under /nothing/here"], id="empty-prefix"),
        pytest.param("reader", "secretsmanager:{guarded}?version-stage=nope", SecretNotFound,
                     ["version-stage=nope"], id="missing-stage"),
        pytest.param("ssm_only", "secretsmanager:{guarded}", PermissionDenied,
                     ["ssm-only", "secretsmanager:app/guarded", "secretsmanager:GetSecretValue"],
                     id="denied-role"),
        pytest.param("reader", "vault:secret/data/app", ConfigError,
                     ["'vault:secret/data/app'", "valid forms"], id="not-an-aws-path"),
    ],
)  # fmt: skip
def test_read_errors(
    aws: Aws,
    make_store: StoreFactory,
    logs: io.StringIO,
    guarded: str,
    role: str,
    path: str,
    error: type[AgentError],
    words: list[str],
) -> None:
    store = make_store(getattr(aws, role))
    with pytest.raises(error) as caught:
        store.read(path.format(guarded=guarded))
    message = str(caught.value)
    for word in words:
        assert word in message
    assert VALUE not in message + logs.getvalue()


def _token(issuer: Issuer, **claims: Any) -> str:
    return issuer.mint(namespace="app", service_account="app", **({"audience": AUDIENCE} | claims))


@pytest.mark.parametrize(
    ("role", "token", "error", "words"),
    [
        pytest.param("{reader}-gone", "good", LoginDenied,
                     ["AccessDenied", "role/reader-gone"], id="no-such-role"),
        pytest.param("{untrusting}", "good", LoginDenied,
                     ["AccessDenied", "role/untrusting"], id="role-does-not-trust-issuer"),
        pytest.param("{reader}", "wrong-audience", LoginDenied,
                     ["AccessDenied", "role/reader"], id="wrong-audience"),
        pytest.param("{reader}", "expired", LoginDenied,
                     ["ExpiredTokenException", "role/reader"], id="expired-token"),
        pytest.param("{reader}", "not-a-jwt", LoginDenied,
                     ["InvalidIdentityToken", "role/reader"], id="malformed-token"),
        pytest.param("{reader}", None, TokenError, ["does not exist"], id="no-token-file"),
    ],
)  # fmt: skip
def test_login_errors(
    aws: Aws,
    make_store: StoreFactory,
    issuer: Issuer,
    tmp_path: Path,
    role: str,
    token: str | None,
    error: type[AgentError],
    words: list[str],
) -> None:
    tokens = {
        "good": _token(issuer),
        "wrong-audience": _token(issuer, audience="vault"),
        "expired": _token(issuer, now=time.time() - 3600),
        "not-a-jwt": "not-a-jwt",
    }
    path = tmp_path / "login-token"
    if token is not None:
        path.write_text(tokens[token])
    elsewhere = "arn:aws:iam::123456789012:oidc-provider/elsewhere"
    untrusting = aws.server.add_role(
        unique("untrusting"), provider_arn=elsewhere, actions=READ_ACTIONS
    )
    store = make_store(role.format(reader=aws.reader, untrusting=untrusting), token_path=path)
    with pytest.raises(error) as caught:
        store.login()
    message = str(caught.value)
    for word in words:
        assert word in message
    assert all(t not in message for t in tokens.values())


# --- credentials: refreshed before they expire, and when the token rotates --------------


def test_credentials_refreshed_before_expiry(aws: Aws, make_store: StoreFactory) -> None:
    """A clock moved past the refresh point makes the next read buy new credentials."""
    name = unique("app/refresh")
    aws.server.client("secretsmanager").create_secret(Name=name, SecretString="x")
    now = [time.monotonic()]
    store = make_store(clock=lambda: now[0])
    before = aws.server.logins(aws.reader)
    store.read(f"secretsmanager:{name}")
    store.read(f"secretsmanager:{name}")
    assert aws.server.logins(aws.reader) == before + 1
    refresh_at = store.refresh_at
    assert store.maintain() == refresh_at  # not due: nothing happens
    now[0] = refresh_at + 1
    assert store.read(f"secretsmanager:{name}").fields == {"value": "x"}
    assert aws.server.logins(aws.reader) == before + 2
    assert store.refresh_at > now[0]  # the new credentials are not due at once


def test_token_rotation_logs_in_again(
    aws: Aws, make_store: StoreFactory, issuer: Issuer, token_path: Path, logs: io.StringIO
) -> None:
    store = make_store()
    store.login()
    before = aws.server.logins(aws.reader)
    store.maintain()
    assert aws.server.logins(aws.reader) == before
    token_path.write_text(_token(issuer, pod="app-1"))
    store.maintain()
    assert aws.server.logins(aws.reader) == before + 1
    assert "token file rotated" in logs.getvalue()


# --- the real CLI -----------------------------------------------------------------------


def _run_agent(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LATCHKEY_CONFIG": json.dumps(config)}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", "--once", "--deadline", "5"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _agent_config(
    aws: Aws, token_path: Path, role: str, files: list[dict[str, str]]
) -> dict[str, Any]:
    return {
        "store": {"kind": "aws", "region": "us-east-1", "endpointUrl": aws.server.endpoint},
        "role": role,
        "tokenPath": str(token_path),
        "secretsDir": str(token_path.parent / "secrets"),
        "stateDir": str(token_path.parent / "state"),
        "files": files,
    }


def test_cli_once_writes_files_from_aws(aws: Aws, token_path: Path) -> None:
    name, prefix = unique("app/cli"), "/" + unique("cli")
    aws.server.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"username": "app", "password": VALUE})
    )
    aws.server.client("ssm").put_parameter(Name=f"{prefix}/key", Value="k1", Type="SecureString")
    files = [
        {"name": "db.json", "path": f"secretsmanager:{name}"},
        {"name": "password", "path": f"secretsmanager:{name}", "key": "password"},
        {"name": "config.env", "path": f"ssm:{prefix}/*", "format": "env"},
    ]
    done = _run_agent(_agent_config(aws, token_path, aws.reader, files))
    assert done.returncode == 0, done.stderr
    secrets = token_path.parent / "secrets"
    assert json.loads((secrets / "db.json").read_text()) == {"username": "app", "password": VALUE}
    assert (secrets / "password").read_text() == VALUE
    assert (secrets / "config.env").read_text() == "key=k1\n"
    assert VALUE not in done.stdout + done.stderr


def test_cli_once_denied_role_exits_with_one_clear_line(
    aws: Aws, token_path: Path, guarded: str
) -> None:
    files = [{"name": "guarded", "path": f"secretsmanager:{guarded}"}]
    done = _run_agent(_agent_config(aws, token_path, aws.ssm_only, files))
    assert done.returncode == PermissionDenied.exit_code
    assert "role/ssm-only" in done.stderr
    assert f"secretsmanager:{guarded}" in done.stderr
    assert "Traceback" not in done.stderr
    assert VALUE not in done.stdout + done.stderr
    assert not (token_path.parent / "secrets" / "guarded").exists()


VAULT = {"kind": "vault", "address": "https://vault:8200", "auth": {"audience": "vault"}}
AWS = {"kind": "aws", "region": "us-east-1"}


@pytest.mark.parametrize(
    ("store", "loaded"),
    [
        pytest.param(VAULT, False, id="vault-never-loads-botocore"),
        pytest.param(AWS, True, id="aws"),
    ],
)
def test_botocore_is_loaded_only_for_an_aws_store(store: dict[str, Any], loaded: bool) -> None:
    code = (
        "import sys, json\n"
        "from sidecar.config import AgentConfig, parse\n"
        "from sidecar.logs import Log\n"
        "from sidecar.stores import open_store\n"
        "open_store(parse(AgentConfig, json.loads(sys.argv[1])), log=Log())\n"
        "print('botocore' in sys.modules, 'sidecar.stores.aws' in sys.modules)\n"
    )
    config = json.dumps({"store": store, "role": "arn:aws:iam::123456789012:role/app"})
    done = subprocess.run(
        [sys.executable, "-c", code, config], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == [str(loaded), str(loaded)]
