"""Configure OpenBao or Vault for a cluster: the auth method, a role per service account,
a read policy per app. Idempotent: run it again after changing the plan.

    BAO_TOKEN=... latchkey-webhook store-setup --address https://bao:8200 [--ca-file ca.crt] PLAN
    BAO_TOKEN=... python hack/store-setup.py ...   # the same, from a checkout

The admin token comes from BAO_TOKEN or VAULT_TOKEN, never a flag (flags show in `ps`).
PLAN is YAML, described field by field in ``manifests/examples/store-setup.yaml``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import ssl
import sys
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

STORE_PATH = r"^[A-Za-z0-9_.+*/-]+$"
NAME = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"


class SetupError(Exception):
    """The plan or the store refused; the message says which and why."""


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


class Auth(Plan):
    method: Literal["jwt", "kubernetes"] = "jwt"
    mount: str = ""
    jwks_file: Path | None = None
    jwks_url: str | None = None
    oidc_discovery_url: str | None = None
    issuer: str | None = None
    ca_file: Path | None = None
    kubernetes_host: str | None = None
    kubernetes_ca_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> Auth:
        sources = [s for s in (self.jwks_file, self.jwks_url, self.oidc_discovery_url) if s]
        if self.method == "jwt" and len(sources) != 1:
            raise ValueError("jwt needs exactly one of jwksFile, jwksUrl, oidcDiscoveryUrl")
        if self.method == "jwt" and not self.oidc_discovery_url and not self.issuer:
            raise ValueError("jwt with jwksFile or jwksUrl needs issuer (the tokens' iss)")
        if self.method == "kubernetes" and not self.kubernetes_host:
            raise ValueError("kubernetes needs kubernetesHost (the API server's URL)")
        return self

    @property
    def path(self) -> str:
        return (self.mount or self.method).strip("/")


class Role(Plan):
    namespace: str = Field(pattern=NAME)
    service_account: str = Field(pattern=NAME)
    name: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]+)?$")
    read: tuple[str, ...] = Field(min_length=1)
    token_ttl: str = Field(default="15m", pattern=r"^\d+[smh]$")
    token_max_ttl: str = Field(default="8h", pattern=r"^\d+[smh]$")

    @model_validator(mode="after")
    def _paths(self) -> Role:
        bad = [p for p in self.read if not re.fullmatch(STORE_PATH, p)]
        if bad:
            raise ValueError(f"read: {bad[0]!r} is not a store path such as secret/data/app/*")
        return self

    @property
    def role(self) -> str:
        return self.name or self.service_account

    @property
    def policy(self) -> str:
        return f"latchkey-{self.namespace}-{self.service_account}"

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class Setup(Plan):
    audience: str = Field(min_length=1)
    auth: Auth
    roles: tuple[Role, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_roles(self) -> Setup:
        names = [r.role for r in self.roles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"role {dupes[0]!r} appears twice: give one of them a `name`")
        return self


def load_plan(path: Path) -> Setup:
    """Parse the plan; errors name the field, e.g. ``roles.0.serviceAccount``."""
    try:
        setup = Setup.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(f"cannot read plan {path}: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()
        )
        raise SetupError(f"plan {path}: {problems}") from exc
    files = {k: path.parent / v for k, v in setup.auth if k.endswith("_file") and v}
    return setup.model_copy(update={"auth": setup.auth.model_copy(update=files)})


def jwks_to_pems(jwks: dict[str, Any]) -> list[str]:
    """PEM public keys from a JWKS, as JWT auth's ``jwt_validation_pubkeys`` takes them."""

    def number(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    pems = []
    for key in jwks.get("keys", []):
        if key.get("kty") == "RSA":
            public: Any = rsa.RSAPublicNumbers(number(key["e"]), number(key["n"])).public_key()
        elif key.get("kty") == "EC" and key.get("crv") == "P-256":
            numbers = ec.EllipticCurvePublicNumbers(
                number(key["x"]), number(key["y"]), ec.SECP256R1()
            )
            public = numbers.public_key()
        else:
            raise SetupError(f"JWKS key {key.get('kid', '?')}: unsupported kty/crv")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        pems.append(public.public_bytes(serialization.Encoding.PEM, spki).decode())
    if not pems:
        raise SetupError("the JWKS holds no keys")
    return pems


def _read(path: Path | None) -> str | None:
    try:
        return path.read_text(encoding="utf-8") if path else None
    except OSError as exc:
        raise SetupError(f"cannot read {path}: {exc}") from exc


def auth_config(auth: Auth) -> dict[str, Any]:
    """The body of ``auth/<mount>/config``."""
    if auth.method == "kubernetes":
        body = {"kubernetes_host": auth.kubernetes_host}
        return body | ({"kubernetes_ca_cert": ca} if (ca := _read(auth.kubernetes_ca_file)) else {})
    ca = _read(auth.ca_file) or ""
    if auth.oidc_discovery_url:
        return {"oidc_discovery_url": auth.oidc_discovery_url, "oidc_discovery_ca_pem": ca}
    if auth.jwks_url:
        return {"jwks_url": auth.jwks_url, "jwks_ca_pem": ca, "bound_issuer": auth.issuer}
    try:
        jwks = json.loads(_read(auth.jwks_file) or "")
    except json.JSONDecodeError as exc:
        raise SetupError(f"{auth.jwks_file} is not JSON: {exc}") from exc
    return {"jwt_validation_pubkeys": jwks_to_pems(jwks), "bound_issuer": auth.issuer}


def role_body(role: Role, *, auth: Auth, audience: str) -> dict[str, Any]:
    """The body of ``auth/<mount>/role/<name>``: this service account only, this audience."""
    common = {
        "token_policies": [role.policy],
        "token_ttl": role.token_ttl,
        "token_max_ttl": role.token_max_ttl,
    }
    if auth.method == "kubernetes":
        return common | {
            "bound_service_account_names": [role.service_account],
            "bound_service_account_namespaces": [role.namespace],
            "audience": audience,
        }
    return common | {
        "role_type": "jwt",
        "user_claim": "sub",
        "bound_subject": role.subject,
        "bound_audiences": [audience],
    }


def policy_hcl(role: Role) -> str:
    return "".join(f'path "{path}" {{\n  capabilities = ["read"]\n}}\n' for path in role.read)


class Store:
    """The few calls setup makes; errors carry the store's own message, never the token."""

    def __init__(self, address: str, *, token: str, ca_file: Path | None) -> None:
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.client = httpx.Client(
            base_url=address, verify=verify, headers={"X-Vault-Token": token}, timeout=15
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.client.request(method, f"/v1/{path}", json=body)
        except httpx.HTTPError as exc:
            raise SetupError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = "; ".join(response.json().get("errors", [])) or response.reason_phrase
            except ValueError:
                detail = response.reason_phrase
            raise SetupError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        return response.json() if response.content else {}


def apply(store: Store, setup: Setup) -> list[str]:
    """Make the store match the plan; return one line per thing configured."""
    auth = setup.auth
    mounts = store.call("GET", "sys/auth").get("data", {})
    current = mounts.get(f"{auth.path}/", {}).get("type")
    if current is None:
        store.call("POST", f"sys/auth/{auth.path}", {"type": auth.method})
    elif current != auth.method:
        raise SetupError(f"auth mount {auth.path}/ is of type {current}, not {auth.method}")
    store.call("POST", f"auth/{auth.path}/config", auth_config(auth))
    done = [f"auth {auth.path}/ ({auth.method}) configured"]
    for role in setup.roles:
        store.call("PUT", f"sys/policies/acl/{role.policy}", {"policy": policy_hcl(role)})
        body = role_body(role, auth=auth, audience=setup.audience)
        store.call("POST", f"auth/{auth.path}/role/{role.role}", body)
        done.append(
            f"role {role.role}: {role.subject}, audience {setup.audience}, "
            f"policy {role.policy} reads {', '.join(role.read)}"
        )
    return done


def main(argv: list[str] | None = None, *, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Configure OpenBao or Vault for a cluster: the auth method, a role per "
        "service account, a read policy per app. Idempotent: run it again after changing the "
        "plan. The admin token comes from BAO_TOKEN or VAULT_TOKEN, never a flag.",
    )
    parser.add_argument("plan", type=Path, help="the setup plan (YAML)")
    parser.add_argument(
        "--address", default=os.environ.get("BAO_ADDR", os.environ.get("VAULT_ADDR"))
    )
    parser.add_argument(
        "--ca-file", type=Path, help="CA bundle that signed the store's certificate"
    )
    args = parser.parse_args(argv)
    token = os.environ.get("BAO_TOKEN") or os.environ.get("VAULT_TOKEN")
    if not args.address:
        parser.error("give --address (or set BAO_ADDR / VAULT_ADDR)")
    if not token:
        parser.error("set BAO_TOKEN or VAULT_TOKEN to a token that may manage auth and policies")
    try:
        done = apply(Store(args.address, token=token, ca_file=args.ca_file), load_plan(args.plan))
    except SetupError as exc:
        sys.exit(f"store-setup: {exc}")
    print("\n".join(done))


if __name__ == "__main__":
    main()
