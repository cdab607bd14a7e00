"""The Vault/OpenBao store against a real OpenBao: KV v1 and v2, TLS trust, namespaces,
the login's life (rotation, renewal, max TTL, revocation) and a real renewable lease."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from hack.localstore import Issuer
from sidecar.auth import TokenFile
from sidecar.config import AgentConfig, parse
from sidecar.errors import StoreUnavailable
from sidecar.logs import Log
from sidecar.stores import open_store
from sidecar.stores.vault import VaultStore
from tests.sidecar.agent_helpers import App
from tests.sidecar.database import Postgres, grant_database
from webhook.certs import make_ca


def store_for(app: App, **config: object) -> tuple[VaultStore, io.StringIO]:
    stream = io.StringIO()
    agent = parse(AgentConfig, app.config(**config))
    store = open_store(agent, log=Log(stream, debug=True))
    assert isinstance(store, VaultStore)
    return store, stream


def messages(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["msg"] for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("kv1_path", "api_key", id="kv-v1"),
        pytest.param("db_path", "password", id="kv-v2"),
    ],
)
def test_reads_kv_v1_and_v2(app: App, path: str, field: str) -> None:
    store, _ = store_for(app)
    secret = store.read(getattr(app, path))
    assert secret.fields[field] == app.values[field]
    assert "metadata" not in secret.fields
    assert secret.lease is None
    assert not secret.scalar
    store.close(revoke=True)


def test_another_ca_is_refused(app: App) -> None:
    config = app.config()
    config["store"]["caBundle"] = make_ca("someone else").cert_pem.decode()
    store, _ = store_for(app, store=config["store"])
    with pytest.raises(StoreUnavailable, match="CERTIFICATE_VERIFY_FAILED") as caught:
        store.login()
    assert app.store.address in str(caught.value)


def test_a_rotated_token_file_means_a_new_login(app: App) -> None:
    store, stream = store_for(app)
    store.maintain()
    store.maintain()
    assert messages(stream).count("logged in") == 1
    app.write_token(pod="app-0", ttl=900)
    store.maintain()
    assert messages(stream)[-2:] == ["token file rotated; logging in again", "logged in"]
    assert store.read(app.db_path).fields["username"] == app.values["username"]
    store.close(revoke=True)


def test_store_token_renewed_then_login_again_at_max_ttl(app: App) -> None:
    app.store.api(
        "POST",
        f"auth/jwt/role/{app.role}",
        {"role_type": "jwt", "token_ttl": "2s", "token_max_ttl": "3s"},
    )
    store, stream = store_for(app)
    store.maintain()
    deadline = time.monotonic() + 6
    while messages(stream).count("logged in") < 2 and time.monotonic() < deadline:
        store.maintain()
        time.sleep(0.05)
    seen = messages(stream)
    assert seen.count("logged in") == 2, seen
    assert seen.index("store token renewed") < len(seen) - 1, "renewed before logging in again"
    store.close(revoke=True)


@pytest.mark.parametrize(
    ("revoke", "left"), [pytest.param(True, 0, id="revoked"), pytest.param(False, 1, id="kept")]
)
def test_close_revokes_only_when_asked(app: App, revoke: bool, left: int) -> None:
    store, _ = store_for(app)
    store.login()
    assert len(app.token_accessors()) == 1
    store.close(revoke=revoke)
    assert len(app.token_accessors()) == left


def test_store_namespace(app: App, issuer: Issuer) -> None:
    namespace = f"ns-{app.name}"
    app.store.api("POST", f"sys/namespaces/{namespace}")
    with app.store.client() as client:
        client.headers["X-Vault-Namespace"] = namespace

        def call(path: str, body: dict[str, object]) -> None:
            response = client.post(f"/v1/{path}", json=body)
            assert response.status_code < 300, response.text

        call("sys/auth/k8s", {"type": "jwt"})
        call("auth/k8s/config", {"jwt_validation_pubkeys": [issuer.public_pem]})
        call("sys/policies/acl/app", {"policy": 'path "kv/*" { capabilities = ["read"] }'})
        call(
            f"auth/k8s/role/{app.role}",
            {
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": ["openbao"],
                "token_policies": ["app"],
            },
        )
        call("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}})
        call("kv/inside", {"where": namespace})
    config = app.config()
    config["store"].update(namespace=namespace, auth={"mount": "k8s", "audience": "openbao"})
    store, _ = store_for(app, store=config["store"])
    assert store.read("kv/inside").fields == {"where": namespace}
    store.close(revoke=True)


def test_a_real_lease_is_renewed(app: App, postgres: Postgres) -> None:
    path = grant_database(app, postgres, ttl="30s", max_ttl="1m")
    store, _ = store_for(app)
    secret = store.read(path)
    lease = secret.lease
    assert lease is not None
    assert lease.renewable
    assert lease.duration == 30
    assert lease.lease_id.startswith(path)
    assert set(secret.fields) == {"username", "password"}
    renewed = store.renew(lease)
    assert renewed.lease_id == lease.lease_id
    assert renewed.duration == 30
    assert renewed.expires_at >= lease.expires_at
    store.close(revoke=True)


def test_token_file_reads_are_fresh_and_named(tmp_path: Path) -> None:
    token = TokenFile(tmp_path / "token")
    with pytest.raises(Exception, match=str(tmp_path / "token")):
        token.read()
    (tmp_path / "token").write_text("one\n")
    assert token.read() == "one"
    assert not token.rotated()
    (tmp_path / "token").write_text("two")
    assert token.rotated()
    (tmp_path / "token").unlink()
    assert not token.rotated(), "a vanished file keeps the current login until it ends"
