"""A stand-in for Microsoft Entra ID and one Azure Key Vault, over real HTTPS on loopback.

Two servers (two hosts to a client: the authority and the vault), one trustme CA
whose certificate names ``localhost`` and ``127.0.0.1``, so hostname checks are
real. Entra's v2.0 token endpoint checks what Entra checks for a federated client
assertion: tenant, client id, grant and assertion types, a ``/.default`` scope,
the assertion's RS256 signature against the cluster issuer's key, the app's
federated identity credentials (issuer, subject, audience) and the assertion's
time range; it answers with Entra's error bodies (``AADSTS…``). Key Vault checks
``api-version``, answers 401 with its Bearer challenge, validates the access token
(signature, audience, tenant, expiry), enforces RBAC (Key Vault Secrets User on
the vault or one secret) and keeps versions. The official SDKs run against it in
tests/sidecar/test_azure_standin.py, which is what makes it a faithful stand-in.

Not Azure: one vault, RBAC only (no access policies), no soft delete, and access
tokens signed with the stand-in's own key.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import trustme
from cryptography.hazmat.primitives.asymmetric import rsa

from hack.localstore import Issuer, free_port

VAULT_RESOURCE = "https://vault.azure.net"
AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API_VERSIONS = frozenset(
    {"2026-04-01", "2025-07-01", "7.6", "7.5", "7.4", "7.3", "7.2", "7.1", "7.0", "2016-10-01"}
)
NOT_FOUND_HTML = b"<html><head><title>404 Not Found</title></head><body>Not Found</body></html>"
FIC_HINT = (
    "Please check your federated identity credential Subject, Audience and Issuer against "
    "the presented assertion. https://learn.microsoft.com/entra/workload-id/"
    "workload-identity-federation"
)


class Refusal(Exception):
    """An error answer: status, JSON body, extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def entra_error(status: int, error: str, code: int, text: str) -> Refusal:
    """Entra's OAuth error body, trace and correlation ids included."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, correlation = uuid.uuid4(), uuid.uuid4()
    return Refusal(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {text} Trace ID: {trace} "
                             f"Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [code], "timestamp": stamp, "trace_id": str(trace),
        "correlation_id": str(correlation), "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    })  # fmt: skip


def vault_error(status: int, code: str, message: str, inner: str | None = None) -> Refusal:
    error: dict[str, Any] = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner}
    return Refusal(status, {"error": error})


@dataclass(frozen=True)
class FederatedCredential:
    """One federated identity credential of an app: who may log in as it."""

    issuer: str
    subject: str
    audiences: tuple[str, ...] = (AUDIENCE,)


@dataclass
class Version:
    id: str
    value: str
    content_type: str | None
    created: int
    enabled: bool = True


@dataclass
class State:
    """What an Azure admin set up, and what the services saw."""

    tenant: str
    apps: dict[str, tuple[str, list[FederatedCredential]]] = field(default_factory=dict)
    grants: set[tuple[str, str]] = field(default_factory=set)  # (client id, secret or "*")
    secrets: dict[str, tuple[str, list[Version]]] = field(default_factory=dict)  # lower name
    issuers: dict[str, Issuer] = field(default_factory=dict)
    token_requests: int = 0
    issued: Counter[str] = field(default_factory=Counter)
    token_seconds: int = 3599
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    """Keeps its connections, so :meth:`close` really takes the service away."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext):
        super().__init__(("127.0.0.1", port), handler)
        self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.open: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.open.add(request)
        super().process_request(request, client_address)

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        for connection in list(self.open):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body in one segment, sent at once: else the client's delayed ACK
    # stalls every answer by 40 ms, and the bench would time the stand-in, not the agent.
    disable_nagle_algorithm = True
    wbufsize = -1
    timeout = 30
    state: State
    owner: AzureServer

    def log_message(self, *args: object) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, route: Any) -> None:
        try:
            body, status, headers = route(), 200, {}
        except Refusal as refusal:
            body, status, headers = refusal.body, refusal.status, refusal.headers
        if body is None:
            self._send(404, NOT_FOUND_HTML, "text/html", {})
        else:
            self._send(
                status, json.dumps(body).encode(), "application/json; charset=utf-8", headers
            )

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)


class _Entra(_Handler):
    def do_GET(self) -> None:
        self._answer(self._discovery)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        self._answer(lambda: self._token(form))

    def _discovery(self) -> dict[str, Any] | None:
        """What MSAL reads for a custom authority: instance discovery, tenant metadata."""
        path, host = urlsplit(self.path).path, self.owner.authority_host
        tenant = self.state.tenant
        if path == "/common/discovery/instance":
            endpoint = f"{host}/{tenant}/v2.0/.well-known/openid-configuration"
            return {"tenant_discovery_endpoint": endpoint, "api-version": "1.1", "metadata": []}
        found = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if not found:
            return None
        self._tenant(found.group(1))
        return {
            "issuer": f"{host}/{tenant}/v2.0",
            "token_endpoint": f"{host}/{tenant}/oauth2/v2.0/token",
            "authorization_endpoint": f"{host}/{tenant}/oauth2/v2.0/authorize",
            "jwks_uri": f"{host}/{tenant}/discovery/v2.0/keys",
        }

    def _tenant(self, tenant: str) -> None:
        if tenant != self.state.tenant:
            raise entra_error(400, "invalid_request", 90002, (
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
                "ID and are signing into the correct cloud."
            ))  # fmt: skip

    def _token(self, form: dict[str, str]) -> dict[str, Any] | None:
        found = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", urlsplit(self.path).path)
        if not found:
            return None
        with self.state.lock:
            self.state.token_requests += 1
        self._tenant(found.group(1))
        client_id, resource = self._client(form)
        claims = self._assertion(form.get("client_assertion", ""), client_id)
        with self.state.lock:
            self.state.issued[client_id] += 1
        return self.owner.access_token(client_id, resource, claims)

    def _client(self, form: dict[str, str]) -> tuple[str, str]:
        """The app and the resource asked for; refusals in Entra's order and words."""
        if form.get("grant_type") != "client_credentials":
            raise entra_error(400, "unsupported_grant_type", 70003,
                              "The app requested an unsupported grant type.")  # fmt: skip
        client_id = form.get("client_id", "")
        if client_id not in self.state.apps:
            raise entra_error(400, "unauthorized_client", 700016, (
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.state.tenant}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant."
            ))  # fmt: skip
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise entra_error(401, "invalid_client", 7000216, (
                "'client_assertion', 'client_secret' or 'request' is required for the "
                "'client_credentials' grant type."
            ))  # fmt: skip
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            raise entra_error(400, "invalid_scope", 70011, (
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier."
            ))  # fmt: skip
        resource = scope.removesuffix("/.default")
        if resource != VAULT_RESOURCE:
            raise entra_error(400, "invalid_resource", 500011, (
                f"The resource principal named {resource} was not found in the tenant named "
                f"{self.state.tenant}."
            ))  # fmt: skip
        return client_id, resource

    def _assertion(self, assertion: str, client_id: str) -> dict[str, Any]:
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise entra_error(400, "invalid_request", 50027,
                              "JWT token is invalid or malformed.") from None  # fmt: skip
        self._federated(claims, self.state.apps[client_id][1])
        issuer = self.state.issuers.get(claims.get("iss", ""))
        unchecked: Any = {"verify_exp": False, "verify_nbf": False, "verify_aud": False}
        try:
            if issuer is None:  # Entra could not fetch the issuer's keys
                raise jwt.InvalidKeyError(claims.get("iss"))
            jwt.decode(assertion, issuer.key.public_key(), algorithms=["RS256"], options=unchecked)
        except jwt.PyJWTError:
            text = "Client assertion failed signature validation."
            raise entra_error(401, "invalid_client", 700027, text) from None
        now = time.time()
        if not float(claims.get("nbf", 0)) - 300 <= now < float(claims.get("exp", 0)):
            stamp = time.strftime("%m/%d/%Y %H:%M:%S", time.gmtime(now))
            raise entra_error(400, "invalid_client", 700024, (
                f"Client assertion is not within its valid time range. Current time: {stamp}, "
                f"expiry time of assertion {claims.get('exp')}."
            ))  # fmt: skip
        return claims

    def _federated(self, claims: dict[str, Any], credentials: list[FederatedCredential]) -> None:
        """A credential must match issuer, subject and one audience exactly."""
        iss, sub = claims.get("iss"), claims.get("sub")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        by_issuer = [c for c in credentials if c.issuer == iss]
        by_subject = [c for c in by_issuer if c.subject == sub]
        if any(a in c.audiences for c in by_subject for a in audiences):
            return
        if not by_issuer:
            text = f"presented assertion issuer '{iss}'."
            raise entra_error(
                401,
                "invalid_client",
                700211,
                f"No matching federated identity record found for {text} {FIC_HINT}",
            )
        if not by_subject:
            text = f"presented assertion subject '{sub}'."
            raise entra_error(
                401,
                "invalid_client",
                700213,
                f"No matching federated identity record found for {text} {FIC_HINT}",
            )
        raise entra_error(401, "invalid_client", 70021, (
            "No matching federated identity record found for presented assertion. "
            f"Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. "
            f"Assertion Audience: '{','.join(map(str, audiences))}'. {FIC_HINT}"
        ))  # fmt: skip


class _Vault(_Handler):
    def do_GET(self) -> None:
        self._answer(self._get)

    def _get(self) -> dict[str, Any] | None:
        found = re.fullmatch(
            r"/secrets/([0-9A-Za-z-]{1,127})(?:/([^/]+))?/?", urlsplit(self.path).path
        )
        if not found:
            return None
        versions = self.query.get("api-version", [])
        if not versions:
            raise vault_error(400, "BadParameter", "The request URI contains an invalid or "
                              "missing api-version query parameter.")  # fmt: skip
        if versions[0] not in API_VERSIONS:
            raise vault_error(400, "BadParameter", f"The specified version ({versions[0]}) is "
                              "not recognized. Consider using the latest supported version "
                              "(2026-04-01).")  # fmt: skip
        claims = self._caller()
        return self.owner.secret_answer(claims, found.group(1), found.group(2))

    def _caller(self) -> dict[str, Any]:
        """The access token's claims, or a 401 with Key Vault's Bearer challenge."""
        state, header = self.state, self.headers.get("Authorization", "")
        challenge = {
            "WWW-Authenticate": f'Bearer authorization="{self.owner.authority_host}/'
            f'{state.tenant}", resource="{VAULT_RESOURCE}"'
        }

        def refuse(message: str) -> Refusal:
            return Refusal(401, vault_error(401, "Unauthorized", message).body, challenge)

        if not header.startswith("Bearer "):
            raise refuse("AKV10000: Request is missing a Bearer or PoP token.")
        try:
            claims: dict[str, Any] = jwt.decode(
                header.removeprefix("Bearer "), state.key.public_key(), algorithms=["RS256"],
                options={"verify_aud": False, "verify_exp": False},
            )  # fmt: skip
        except jwt.PyJWTError:
            raise refuse("[SignatureInvalid] Error validating token: 'S2S12005'.") from None
        if claims.get("aud") != VAULT_RESOURCE:
            raise refuse(f"AKV10022: Invalid audience. Expected {VAULT_RESOURCE}, "
                         f"found: {claims.get('aud')}.")  # fmt: skip
        if claims.get("tid") != state.tenant:
            expected = f"https://sts.windows.net/{state.tenant}/"
            raise refuse(
                f"AKV10032: Invalid issuer. Expected one of {expected}, found {claims.get('iss')}."
            )
        if float(claims.get("exp", 0)) <= time.time():
            raise refuse("[TokenExpired] Error validating token: 'S2S12086'.")
        return claims


class AzureServer:
    """Entra plus one Key Vault; ``start()``/``stop()``, set up through the methods below."""

    def __init__(self, issuer: Issuer | None = None, *, tenant: str | None = None) -> None:
        self.state = State(tenant=tenant or str(uuid.uuid4()))
        if issuer is not None:
            self.trust(issuer)
        self.ca = trustme.CA()
        self.ca_pem = self.ca.cert_pem.bytes().decode()
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("localhost", "127.0.0.1").configure_cert(self._tls)
        self.entra_port, self.vault_port = free_port(), free_port()
        self._servers: list[_Server] = []

    @property
    def tenant(self) -> str:
        return self.state.tenant

    @property
    def authority_host(self) -> str:
        return f"https://localhost:{self.entra_port}"

    @property
    def vault_url(self) -> str:
        return f"https://localhost:{self.vault_port}"

    @property
    def vault_name(self) -> str:
        return "latchkey-standin"

    def start(self) -> None:
        for port, base in ((self.entra_port, _Entra), (self.vault_port, _Vault)):
            handler = type(base.__name__, (base,), {"state": self.state, "owner": self})
            server = _Server(port, handler, self._tls)
            threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
            self._servers.append(server)

    def stop(self) -> None:
        """Both services gone, open connections cut; ``start()`` brings them back."""
        for server in self._servers:
            server.close()
        self._servers = []

    # --- what an Azure admin does ----------------------------------------------------

    def trust(self, issuer: Issuer) -> None:
        """Entra can fetch this cluster issuer's keys (its OIDC discovery is public)."""
        self.state.issuers[issuer.issuer] = issuer

    def add_app(self, client_id: str | None = None, *credentials: FederatedCredential) -> str:
        """An app registration or user-assigned managed identity; its client id."""
        client_id = client_id or str(uuid.uuid4())
        with self.state.lock:
            self.state.apps[client_id] = (str(uuid.uuid4()), list(credentials))
        return client_id

    def federate(self, client_id: str, credential: FederatedCredential) -> None:
        with self.state.lock:
            self.state.apps[client_id][1].append(credential)

    def grant(self, client_id: str, secret: str | None = None) -> None:
        """Key Vault Secrets User for ``client_id`` on the vault, or on one secret."""
        with self.state.lock:
            self.state.grants.add((client_id, (secret or "*").lower()))

    def revoke(self, client_id: str, secret: str | None = None) -> None:
        with self.state.lock:
            self.state.grants.discard((client_id, (secret or "*").lower()))

    def set_secret(self, name: str, value: str, *, content_type: str | None = None) -> str:
        """A new version, now the current one; its 32-hex id."""
        version = Version(secrets.token_hex(16), value, content_type, int(time.time()))
        with self.state.lock:
            self.state.secrets.setdefault(name.lower(), (name, []))[1].append(version)
        return version.id

    def disable(self, name: str, version: str | None = None) -> None:
        """Disable one version (the current one when none is named)."""
        with self.state.lock:
            versions = self.state.secrets[name.lower()][1]
            target = next(v for v in versions if v.id == version) if version else versions[-1]
            target.enabled = False

    def roll_signing_key(self) -> None:
        """Entra's token-signing key changes at once: every access token out there fails."""
        with self.state.lock:
            self.state.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def set_token_lifetime(self, seconds: int) -> None:
        self.state.token_seconds = seconds

    def issued(self, client_id: str) -> int:
        """Access tokens Entra gave ``client_id``: a new exchange shows here."""
        return self.state.issued[client_id]

    # --- the services' answers -------------------------------------------------------

    def access_token(
        self, client_id: str, resource: str, assertion: dict[str, Any]
    ) -> dict[str, Any]:
        state, now = self.state, int(time.time())
        claims = {
            "aud": resource, "iss": f"https://sts.windows.net/{state.tenant}/",
            "iat": now, "nbf": now, "exp": now + state.token_seconds,
            "appid": client_id, "oid": state.apps[client_id][0], "sub": state.apps[client_id][0],
            "tid": state.tenant, "idtyp": "app", "ver": "1.0", "xms_fic_sub": assertion.get("sub"),
        }  # fmt: skip
        token = jwt.encode(claims, state.key, algorithm="RS256")
        seconds = state.token_seconds
        return {"token_type": "Bearer", "expires_in": seconds, "ext_expires_in": seconds,
                "access_token": token}  # fmt: skip

    def secret_answer(
        self, caller: dict[str, Any], name: str, version: str | None
    ) -> dict[str, Any]:
        state = self.state
        with state.lock:
            allowed = {(caller["appid"], "*"), (caller["appid"], name.lower())} & state.grants
            stored, versions = state.secrets.get(name.lower(), (name, []))
        if not allowed:
            raise self._forbidden(caller, name)
        found = [v for v in versions if v.id == version] if version else versions[-1:]
        if not found:
            shown = f"{name}/{version}" if version else name
            raise vault_error(404, "SecretNotFound", (
                f"A secret with (name/id) {shown} was not found in this key vault. If you "
                "recently deleted this secret you may be able to recover it using the correct "
                "recovery command. For help resolving this issue, please see "
                "https://go.microsoft.com/fwlink/?linkid=2125182"
            ))  # fmt: skip
        if not found[0].enabled:
            raise vault_error(403, "Forbidden", "Operation get is not allowed on a disabled "
                              "secret.", "SecretDisabled")  # fmt: skip
        return self._secret_body(stored, found[0])

    def _secret_body(self, name: str, version: Version) -> dict[str, Any]:
        body: dict[str, Any] = {
            "value": version.value,
            "id": f"{self.vault_url}/secrets/{name}/{version.id}",
            "attributes": {"enabled": True, "created": version.created,
                           "updated": version.created, "recoveryLevel": "Recoverable+Purgeable",
                           "recoverableDays": 90},
            "tags": {},
        }  # fmt: skip
        if version.content_type:
            body["contentType"] = version.content_type
        return body

    def _forbidden(self, caller: dict[str, Any], name: str) -> Refusal:
        vault = f"/subscriptions/{uuid.UUID(int=0)}/resourcegroups/latchkey/providers/"
        vault += f"microsoft.keyvault/vaults/{self.vault_name}"
        message = (
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, "
            "deny assignments or role definitions were changed recently, please observe "
            "propagation time.\r\n"
            f"Caller: appid={caller['appid']};oid={caller['oid']};iss={caller['iss']}\r\n"
            "Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\n"
            f"Resource: '{vault}/secrets/{name.lower()}'\r\nAssignment: (not found)\r\n"
            f"DenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {self.vault_name};"
            "location=westeurope\r\n"
        )
        return vault_error(403, "Forbidden", message, "ForbiddenByRbac")
