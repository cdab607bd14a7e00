"""Shared set-up for the agent's tests: a seeded app on a real OpenBao, configs, the CLI,
the ways a config can be wrong, file snapshots, a mocked Vault store.

Every app gets its own role, policy and paths (a random prefix), so tests can
share the session's OpenBao without seeing each other's secrets. Secret values
are random and distinctive, so "no value in any output" can be checked by search.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from hack.localstore import Issuer, OpenBao
from sidecar.auth import TokenFile
from sidecar.config import VaultAuth
from sidecar.config import VaultStore as VaultConfig
from sidecar.logs import Log
from sidecar.stores import https
from sidecar.stores.vault import VaultStore

AUDIENCE = "openbao"
NAMESPACE = "team"


@dataclass
class App:
    """One app's role, token file and secrets in a store."""

    store: OpenBao
    issuer: Issuer
    workdir: Path
    name: str = field(default_factory=lambda: f"app{secrets.token_hex(4)}")
    values: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.name

    @property
    def token_path(self) -> Path:
        return self.workdir / "token"

    @property
    def db_path(self) -> str:
        return f"secret/data/{self.name}/db"

    @property
    def kv1_path(self) -> str:
        return f"kv/{self.name}/api"

    @property
    def forbidden_path(self) -> str:
        return f"secret/data/forbidden-{self.name}/x"

    def seed(self, *, token_ttl: str = "1h") -> App:  # noqa: S107
        """Role, policy and secrets: what a cluster admin and the app's owners set up."""
        self.store.write_policy(
            self.name,
            f'path "secret/data/{self.name}/*" {{ capabilities = ["read"] }}\n'
            f'path "kv/{self.name}/*" {{ capabilities = ["read"] }}\n',
        )
        self.store.add_jwt_role(
            self.name,
            namespace=NAMESPACE,
            service_account=self.name,
            audience=AUDIENCE,
            policies=[self.name],
            token_ttl=token_ttl,
        )
        self.values = {
            "username": f"user-{secrets.token_hex(6)}",
            "password": f"pw-{secrets.token_hex(12)}",
            "api_key": f"key-{secrets.token_hex(12)}",
            "forbidden": f"no-{secrets.token_hex(12)}",
        }
        self.put_db(self.values["username"], self.values["password"])
        self.store.put_kv1(f"{self.name}/api", {"api_key": self.values["api_key"]})
        self.store.put_kv2(f"forbidden-{self.name}/x", {"v": self.values["forbidden"]})
        self.write_token()
        return self

    def put_db(self, username: str, password: str) -> None:
        self.values.update(username=username, password=password)
        self.store.put_kv2(f"{self.name}/db", {"username": username, "password": password})

    def write_token(self, **mint: Any) -> str:
        claims = {"namespace": NAMESPACE, "service_account": self.name, "audience": AUDIENCE}
        token = self.issuer.mint(**{**claims, **mint})
        self.token_path.write_text(token)
        return token

    def config(self, **overrides: Any) -> dict[str, Any]:
        """An agent config (camelCase JSON shape) for this app, with two files and an env."""
        config: dict[str, Any] = {
            "store": {
                "kind": "vault",
                "address": self.store.address,
                "caBundle": self.store.ca_file.read_text(),
                "auth": {"method": "jwt", "mount": "jwt", "audience": AUDIENCE},
            },
            "role": self.role,
            "tokenPath": str(self.token_path),
            "secretsDir": str(self.workdir / "secrets"),
            "stateDir": str(self.workdir / "state"),
            "files": [
                {"name": "db.json", "path": self.db_path},
                {"name": "password", "path": self.db_path, "key": "password", "mode": 0o440},
                {"name": "api.env", "path": self.kv1_path, "format": "env"},
            ],
            "env": [{"name": "API_KEY", "path": self.kv1_path, "key": "api_key"}],
            "envFile": str(self.workdir / "state" / "env"),
            "refreshSeconds": 1,
        }
        config.update(overrides)
        return config

    def file(self, name: str) -> Path:
        return self.workdir / "secrets" / name

    def token_accessors(self) -> list[str]:
        """Accessors of the live store tokens this app's role logged in for."""
        try:
            listed = self.store.api("LIST", "auth/token/accessors")["data"]["keys"]
        except RuntimeError:
            return []
        mine = []
        for accessor in listed:
            try:
                info = self.store.api("POST", "auth/token/lookup-accessor", {"accessor": accessor})
            except RuntimeError:  # revoked or expired since the LIST, by another test's agent
                continue
            if (info["data"].get("meta") or {}).get("role") == self.role:
                mine.append(accessor)
        return mine

    def assert_no_value(self, *outputs: str) -> None:
        for text in outputs:
            for name, value in self.values.items():
                assert value not in text, f"the {name} value leaked into output"


def agent_env(config: dict[str, Any] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LATCHKEY_CONFIG"}
    if config is not None:
        env["LATCHKEY_CONFIG"] = json.dumps(config)
    return env


def agent_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", *args]


def run_agent(
    *args: str, config: dict[str, Any] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real ``latchkey-sidecar`` as a subprocess."""
    return subprocess.run(
        agent_argv(*args),
        env=agent_env(config),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def error_line(stderr: str) -> dict[str, Any]:
    """The one JSON line a failed ``--once`` leaves on stderr."""
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line["level"] == "error"]
    assert len(errors) == 1, stderr
    return dict(errors[0])


def wrong_config(app: App, change: str) -> dict[str, Any]:
    """The app's config with one thing wrong (a key of ``FAILURES``), for the exits tests."""
    config = app.config()
    if change == "role":
        config["role"] = "no-such-role"
    elif change == "audience":
        app.write_token(audience="someone-else")
    elif change == "expired":
        app.write_token(now=time.time() - 3600)
    elif change == "missing-path":
        config["files"] = [{"name": "x", "path": f"secret/data/{app.name}/missing"}]
    elif change == "forbidden":
        config["files"] = [{"name": "x", "path": app.forbidden_path}]
    elif change == "no-token-file":
        config["tokenPath"] = str(app.workdir / "nowhere" / "token")
    elif change == "missing-key":
        config["files"] = [{"name": "x", "path": app.db_path, "key": "nope"}]
    elif change == "bad-config":
        config["files"] = [{"name": "Bad Name!", "path": app.db_path}]
    return config


# name: (what is wrong, exit code, error kind, words the one error line must hold)
FAILURES = {
    "wrong-role": (
        "role",
        5,
        "LoginDenied",
        ['role "no-such-role"', 'mount "jwt"', "not be found"],
    ),
    "wrong-audience": ("audience", 5, "LoginDenied", ["invalid audience (aud) claim"]),
    "expired-token": ("expired", 5, "LoginDenied", ["token is expired"]),
    "missing-path": ("missing-path", 7, "SecretNotFound", ["/missing", "nothing at"]),
    "forbidden-path": ("forbidden", 6, "PermissionDenied", ["forbidden-", "may not read"]),
    "no-token-file": ("no-token-file", 3, "TokenError", ["nowhere/token", "does not exist"]),
    "missing-key": ("missing-key", 8, "RenderError", ["nope"]),
    "bad-config": ("bad-config", 2, "ConfigError", ["LATCHKEY_CONFIG", "files.0.name"]),
}


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and inode: a kept file is the very same file."""
    return {p.name: (p.read_bytes(), p.stat().st_ino) for p in sorted(directory.iterdir())}


def temps(*directories: Path) -> list[str]:
    """Temp files a write left behind; there should be none, whatever failed."""
    return [p.name for d in directories if d.exists() for p in d.iterdir() if ".tmp-" in p.name]


# A Vault store answered by a function, for faults a real OpenBao cannot be made to show.
ADDRESS = "https://vault.test:8200"
LOGIN = {"auth": {"client_token": "s.store-token", "lease_duration": 3600, "renewable": True}}
Handler = https.Send


def reply(
    status: int,
    body: object = None,
    *,
    text: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> https.Response:
    """An answer as a server sends it: ``body`` as JSON, or ``text`` as plain text."""
    if text is None:
        content, kind = json.dumps(body).encode(), "application/json"
    else:
        content, kind = text.encode(), "text/plain; charset=utf-8"
    sent = https.Headers(headers or {})
    if "content-type" not in sent:
        sent = https.Headers([("Content-Type", kind), *sent.items()])
    return https.Response(status, HTTPStatus(status).phrase, sent, content)


def make_store(tmp_path: Path, handler: Handler, *, namespace: str = "") -> VaultStore:
    """A Vault store whose every request ``handler`` answers (no network, no OpenBao)."""
    token = tmp_path / "token"
    token.write_text("header.payload.signature")
    config = VaultConfig(
        address=ADDRESS, namespace=namespace, auth=VaultAuth(method="jwt", audience="vault")
    )
    return VaultStore(
        config,
        role="app",
        token_file=TokenFile(token),
        log=Log(io.StringIO()),
        send=handler,
    )
