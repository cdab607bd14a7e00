"""``latchkey-webhook store-setup`` against a real OpenBao: after it runs, a pod's projected
token logs in as its role and reads what the plan grants, and nothing else."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import yaml

from hack.localstore import ROOT_TOKEN, Issuer, OpenBao
from tests.deploy.tools import admin_tool

AUDIENCE = "openbao"


def _jwks(issuer: Issuer) -> dict[str, Any]:
    """What ``kubectl get --raw /openid/v1/jwks`` prints for this issuer."""
    key = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key()))
    return {"keys": [key | {"kid": issuer.kid, "use": "sig", "alg": "RS256"}]}


def _setup(
    store: OpenBao, plan: dict[str, Any], workdir: Path, *, token: str = ROOT_TOKEN
) -> tuple[int, str, str]:
    path = workdir / "plan.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_TOKEN", "_ADDR"))}
    args = ["--address", store.address, "--ca-file", str(store.ca_file), str(path)]
    result = admin_tool("store-setup", *args, env=env | {"BAO_TOKEN": token} if token else env)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def configured(
    openbao: OpenBao, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A fresh JWT mount on the session's OpenBao, set up from a JWKS file by the script."""
    workdir = tmp_path_factory.mktemp("store-setup")
    (workdir / "jwks.json").write_text(json.dumps(_jwks(issuer)), encoding="utf-8")
    mount, ns = f"k8s-{uuid.uuid4().hex[:8]}", f"shop-{uuid.uuid4().hex[:6]}"
    openbao.put_kv2(f"{ns}/web", {"password": "s3cret"})
    openbao.put_kv2(f"{ns}/admin", {"password": "not-for-web"})
    plan = {
        "audience": AUDIENCE,
        "auth": {"method": "jwt", "mount": mount, "jwksFile": "jwks.json", "issuer": issuer.issuer},
        "roles": [{"namespace": ns, "serviceAccount": "web", "read": [f"secret/data/{ns}/web"]}],
    }
    code, out, err = _setup(openbao, plan, workdir)
    assert code == 0, err
    assert ROOT_TOKEN not in out + err
    return {"mount": mount, "ns": ns, "plan": plan, "workdir": workdir, "stdout": out}


def _login(store: OpenBao, mount: str, token: str, role: str = "web") -> httpx.Response:
    with store.client(token="") as client:
        return client.post(f"/v1/auth/{mount}/login", json={"role": role, "jwt": token})


def _read(store: OpenBao, client_token: str, path: str) -> httpx.Response:
    with store.client(token=client_token) as client:
        return client.get(f"/v1/{path}")


def test_pod_token_logs_in_and_reads_its_secret(
    openbao: OpenBao, issuer: Issuer, configured: dict[str, Any]
) -> None:
    ns, mount = configured["ns"], configured["mount"]
    pod_token = issuer.mint(namespace=ns, service_account="web", audience=AUDIENCE)
    login = _login(openbao, mount, pod_token)
    assert login.status_code == 200, login.text
    auth = login.json()["auth"]
    assert f"latchkey-{ns}-web" in auth["policies"]
    assert auth["lease_duration"] <= 15 * 60
    secret = _read(openbao, auth["client_token"], f"secret/data/{ns}/web")
    assert secret.json()["data"]["data"] == {"password": "s3cret"}
    assert f"role web: system:serviceaccount:{ns}:web" in configured["stdout"]


@pytest.mark.parametrize(
    ("service_account", "audience"),
    [
        pytest.param("admin", AUDIENCE, id="other-service-account"),
        pytest.param("web", "vault", id="wrong-audience"),
    ],
)
def test_other_tokens_are_refused(
    openbao: OpenBao,
    issuer: Issuer,
    configured: dict[str, Any],
    service_account: str,
    audience: str,
) -> None:
    token = issuer.mint(
        namespace=configured["ns"], service_account=service_account, audience=audience
    )
    assert _login(openbao, configured["mount"], token).status_code in (400, 403)


def test_token_from_another_issuer_is_refused(openbao: OpenBao, configured: dict[str, Any]) -> None:
    stranger = Issuer()
    token = stranger.mint(namespace=configured["ns"], service_account="web", audience=AUDIENCE)
    assert _login(openbao, configured["mount"], token).status_code in (400, 403)


def test_policy_grants_only_the_planned_paths(
    openbao: OpenBao, issuer: Issuer, configured: dict[str, Any]
) -> None:
    ns = configured["ns"]
    pod_token = issuer.mint(namespace=ns, service_account="web", audience=AUDIENCE)
    client_token = _login(openbao, configured["mount"], pod_token).json()["auth"]["client_token"]
    assert _read(openbao, client_token, f"secret/data/{ns}/admin").status_code == 403


def test_running_again_changes_nothing_that_works(
    openbao: OpenBao, issuer: Issuer, configured: dict[str, Any]
) -> None:
    code, _, err = _setup(openbao, configured["plan"], configured["workdir"])
    assert code == 0, err
    token = issuer.mint(namespace=configured["ns"], service_account="web", audience=AUDIENCE)
    assert _login(openbao, configured["mount"], token).status_code == 200


def test_kubernetes_method_binds_the_service_account(openbao: OpenBao, tmp_path: Path) -> None:
    """Logging in needs a real TokenReview API; the configuration it would use is checked."""
    mount = f"kube-{uuid.uuid4().hex[:8]}"
    (tmp_path / "ca.crt").write_bytes(openbao.ca.cert_pem)
    plan = {
        "audience": AUDIENCE,
        "auth": {"method": "kubernetes", "mount": mount, "kubernetesHost": "https://10.0.0.1",
                 "kubernetesCaFile": "ca.crt"},
        "roles": [{"namespace": "shop", "serviceAccount": "api", "name": "shop-api",
                   "read": ["secret/data/shop/api"], "tokenTtl": "10m"}],
    }  # fmt: skip
    code, _, err = _setup(openbao, plan, tmp_path)
    assert code == 0, err
    config = openbao.api("GET", f"auth/{mount}/config")["data"]
    assert config["kubernetes_host"] == "https://10.0.0.1"
    role = openbao.api("GET", f"auth/{mount}/role/shop-api")["data"]
    assert role["bound_service_account_names"] == ["api"]
    assert role["bound_service_account_namespaces"] == ["shop"]
    assert role["audience"] == AUDIENCE
    assert role["token_ttl"] == 600
    policy = openbao.api("GET", "sys/policies/acl/latchkey-shop-api")["data"]["policy"]
    assert 'path "secret/data/shop/api"' in policy


GOOD_ROLE = {"namespace": "shop", "serviceAccount": "web", "read": ["secret/data/shop/web"]}
JWKS_AUTH = {"method": "jwt", "jwksFile": "jwks.json", "issuer": "https://k8s"}


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        pytest.param({"audience": "a", "auth": {"method": "jwt", "issuer": "x"},
                      "roles": [GOOD_ROLE]}, "exactly one of jwksFile", id="no-key-source"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH | {"jwksUrl": "https://k/jwks"},
                      "roles": [GOOD_ROLE]}, "exactly one of jwksFile", id="two-key-sources"),
        pytest.param({"audience": "a", "auth": {"method": "jwt", "jwksFile": "jwks.json"},
                      "roles": [GOOD_ROLE]}, "needs issuer", id="jwks-without-issuer"),
        pytest.param({"audience": "a", "auth": {"method": "kubernetes"}, "roles": [GOOD_ROLE]},
                     "needs kubernetesHost", id="kubernetes-without-host"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH, "roles": [{"namespace": "shop",
                      "read": ["x"]}]}, "roles.0.serviceAccount", id="missing-service-account"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH, "roles": [GOOD_ROLE | {"read": [
                      'x" { capabilities = ["sudo"] }']}]}, "is not a store path",
                     id="policy-injection"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH, "roles": [GOOD_ROLE, GOOD_ROLE]},
                     "role 'web' appears twice", id="duplicate-role"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH, "roles": [GOOD_ROLE], "extra": 1},
                     "extra: Extra inputs are not permitted", id="unknown-key"),
        pytest.param({"audience": "a", "auth": JWKS_AUTH, "roles": [GOOD_ROLE]},
                     "cannot read", id="jwks-file-missing"),
    ],
)  # fmt: skip
def test_bad_plans_are_explained(
    openbao: OpenBao, tmp_path: Path, plan: dict[str, Any], message: str
) -> None:
    code, _, err = _setup(openbao, plan, tmp_path)
    assert code == 1
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("token", "message"),
    [
        pytest.param("", "set BAO_TOKEN or VAULT_TOKEN", id="no-token"),
        pytest.param("not-a-token", "HTTP 403", id="bad-token"),
    ],
)
def test_store_access_problems_are_explained(
    openbao: OpenBao, tmp_path: Path, token: str, message: str
) -> None:
    plan = {"audience": "a", "auth": JWKS_AUTH, "roles": [GOOD_ROLE]}
    code, _, err = _setup(openbao, plan, tmp_path, token=token)
    assert code != 0
    assert message in err
    assert "Traceback" not in err
    assert "not-a-token" not in err
