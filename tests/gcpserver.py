"""A stand-in for Google's STS, IAM Credentials and Secret Manager, on loopback over HTTPS.

It checks what Google checks, and answers as Google answers:

- STS ``POST /sts/v1/token``: the RFC 8693 form (grant, token types, scope), the
  ``audience`` naming its one workload identity provider, and the subject token
  as that provider does: RS256 signed by the cluster issuer's key (the JWKS an
  admin uploads), ``iss`` the provider's issuer, ``aud`` among its allowed
  audiences, not expired; ``google.subject=assertion.sub``. Refusals are OAuth
  errors (``{"error": "invalid_grant", "error_description": ...}``).
- IAM ``POST /iamcredentials/v1/projects/-/serviceAccounts/SA:generateAccessToken``:
  the caller's token must be live, and its principal hold
  ``roles/iam.workloadIdentityUser`` on the service account.
- Secret Manager ``GET /secretmanager/v1/projects/P/secrets/S/versions/V:access``:
  the caller (a service account or a federated principal) must hold
  ``roles/secretmanager.secretAccessor`` on the secret; versions can be disabled
  or destroyed (400 ``FAILED_PRECONDITION``); ``latest`` is the newest version.

Errors are Google's JSON (``{"error": {"code", "message", "status"}}``), and an
unknown URL gets an HTML 404 as Google's front end gives. Members are written as
``gcloud --member`` takes them (``serviceAccount:EMAIL``, ``principal://...``).
One port serves the three APIs under their own base path (see :attr:`endpoints`),
so a client that sends a call to the wrong endpoint is caught. Used by the gcp
store's tests, the end-to-end tests and the bench: ``start()``, ``stop()``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_crc32c
import jwt
import trustme

from hack.localstore import Issuer

PROJECT = "latchkey-test"
PROJECT_NUMBER = "123456789012"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
IAM_SCOPE = "https://www.googleapis.com/auth/iam"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT_TYPES = (
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
)
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
HTML_404 = (
    "<!DOCTYPE html><html lang=en><title>Error 404 (Not Found)!!1</title>"
    "<p><b>404.</b> <ins>That's an error.</ins><p>The requested URL was not found on this "
    "server. <ins>That's all we know.</ins></html>"
)
_IMPERSONATE = re.compile(
    r"/iamcredentials/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken"
)
_ACCESS = re.compile(r"/secretmanager/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access")


class Refusal(Exception):
    """An error answer: status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def oauth_error(error: str, description: str) -> Refusal:
    return Refusal(400, {"error": error, "error_description": description})


def google_error(code: int, status: str, message: str) -> Refusal:
    return Refusal(code, {"error": {"code": code, "message": message, "status": status}})


@dataclass
class Version:
    data: bytes
    state: str = "ENABLED"  # or DISABLED, DESTROYED


@dataclass
class Secret:
    versions: list[Version] = field(default_factory=list)
    aliases: dict[str, int] = field(default_factory=dict)
    accessors: set[str] = field(default_factory=set)


@dataclass
class Grant:
    """An access token the stand-in issued: whose it is, until when (epoch seconds)."""

    member: str
    expires_at: float
    scopes: frozenset[str]


class GcpServer:
    """The three Google APIs for one project and one workload identity provider."""

    def __init__(
        self,
        issuer: Issuer,
        *,
        pool: str = "latchkey-pool",
        provider: str = "cluster",
        allowed_audiences: list[str] | None = None,
        token_seconds: int = 3600,
    ) -> None:
        self.issuer = issuer
        self.pool = f"projects/{PROJECT_NUMBER}/locations/global/workloadIdentityPools/{pool}"
        self.provider = f"{self.pool}/providers/{provider}"
        self.allowed_audiences = allowed_audiences or [
            f"https://iam.googleapis.com/{self.provider}", f"//iam.googleapis.com/{self.provider}"
        ]  # fmt: skip
        self.token_seconds = token_seconds
        self.ca = trustme.CA()
        self.ca_pem = self.ca.cert_pem.bytes().decode()
        self.exchanges = self.impersonations = self.accesses = 0
        self.corrupt = 0  # the next this many reads carry a wrong checksum
        self._secrets: dict[tuple[str, str], Secret] = {}
        self._impersonators: dict[str, set[str]] = {}
        self._project_accessors: dict[str, set[str]] = {}
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()  # open ones, dropped by stop()

    # --- running ----------------------------------------------------------------------

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        # The handshake happens in each request's thread, not in the accepting one.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a vanished service does."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    @property
    def base(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"https://localhost:{self._server.server_address[1]}"

    @property
    def endpoints(self) -> dict[str, str]:
        """The store's ``endpoints``: one base URL per API."""
        return {api: f"{self.base}/{api}" for api in ("sts", "iamcredentials", "secretmanager")}

    @property
    def audience(self) -> str:
        """The projected token audience the provider accepts by default."""
        return self.allowed_audiences[0]

    def store(self, **extra: Any) -> dict[str, Any]:
        """A ``gcp`` store entry (admin config / agent config) pointing here."""
        return {
            "kind": "gcp", "project": PROJECT, "workloadIdentityProvider": self.provider,
            "endpoints": self.endpoints, "caBundle": self.ca_pem, **extra,
        }  # fmt: skip

    # --- what an admin sets up ---------------------------------------------------------

    def principal(self, namespace: str, service_account: str) -> str:
        """The federated member of a Kubernetes service account (google.subject = sub)."""
        return f"principal://iam.googleapis.com/{self.pool}/subject/system:serviceaccount:{namespace}:{service_account}"

    def allow_impersonation(self, service_account: str, member: str) -> None:
        """``roles/iam.workloadIdentityUser`` for ``member`` on ``service_account``."""
        with self._lock:
            self._impersonators.setdefault(service_account, set()).add(member)

    def add_version(self, name: str, data: bytes | str, *, project: str = PROJECT) -> int:
        """A new version of the secret (made on first use); returns its number."""
        raw = data.encode() if isinstance(data, str) else data
        with self._lock:
            secret = self._secrets.setdefault((project, name), Secret())
            secret.versions.append(Version(raw))
            return len(secret.versions)

    def set_alias(self, name: str, alias: str, version: int, *, project: str = PROJECT) -> None:
        with self._lock:
            self._secrets[(project, name)].aliases[alias] = version

    def set_state(self, name: str, version: int, state: str, *, project: str = PROJECT) -> None:
        """``ENABLED``, ``DISABLED`` or ``DESTROYED`` (which also drops the data)."""
        with self._lock:
            entry = self._secrets[(project, name)].versions[version - 1]
            entry.state = state
            if state == "DESTROYED":
                entry.data = b""

    def bind_accessor(self, name: str, member: str, *, project: str = PROJECT) -> None:
        """``roles/secretmanager.secretAccessor`` for ``member`` on the secret."""
        with self._lock:
            self._secrets.setdefault((project, name), Secret()).accessors.add(member)

    def bind_project_accessor(self, member: str, *, project: str = PROJECT) -> None:
        """``roles/secretmanager.secretAccessor`` on the whole project: a missing secret is
        then a 404, as Google answers a caller allowed to know."""
        with self._lock:
            self._project_accessors.setdefault(project, set()).add(member)

    def unbind_accessor(self, name: str, member: str, *, project: str = PROJECT) -> None:
        with self._lock:
            self._secrets[(project, name)].accessors.discard(member)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (401), as after their hour."""
        with self._lock:
            self._grants.clear()

    # --- the APIs ----------------------------------------------------------------------

    def _grant(self, member: str, seconds: float, scopes: list[str]) -> tuple[str, float]:
        token = f"ya29.standin-{secrets.token_urlsafe(24)}"
        expires_at = time.time() + seconds
        self._grants[token] = Grant(member, expires_at, frozenset(scopes))
        return token, expires_at

    def caller(self, authorization: str, *scopes: str) -> str:
        """The member behind a ``Bearer`` token holding one of ``scopes``; 401 as Google
        answers when there is none, 403 when its scopes do not reach this API."""
        token = authorization.removeprefix("Bearer ")
        grant = self._grants.get(token) if authorization.startswith("Bearer ") else None
        if grant is None or grant.expires_at <= time.time():
            raise google_error(
                401, "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )  # fmt: skip
        if not grant.scopes & set(scopes):
            raise google_error(403, "PERMISSION_DENIED", "Request had insufficient scopes.")
        return grant.member

    def exchange(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("grant_type") != TOKEN_EXCHANGE:
            raise oauth_error("unsupported_grant_type", 'Invalid value for "grant_type".')
        if form.get("subject_token_type") not in SUBJECT_TYPES:
            raise oauth_error("invalid_request", 'Invalid value for "subject_token_type".')
        if form.get("requested_token_type") != ACCESS_TOKEN:
            raise oauth_error("invalid_request", 'Invalid value for "requested_token_type".')
        scopes = form.get("scope", "").split()
        if not scopes:
            raise oauth_error("invalid_scope", "The scope parameter is required.")
        if form.get("audience") != f"//iam.googleapis.com/{self.provider}":
            raise oauth_error(
                "invalid_target",
                'The target service indicated by the "audience" parameters is invalid. This '
                "might either be because the pool or provider is disabled or deleted or "
                "because it doesn't exist.",
            )
        subject = self._subject(form.get("subject_token", ""))
        with self._lock:
            self.exchanges += 1
            member = f"principal://iam.googleapis.com/{self.pool}/subject/{subject}"
            token, _ = self._grant(member, self.token_seconds, scopes)
        return {"access_token": token, "issued_token_type": ACCESS_TOKEN,
                "token_type": "Bearer", "expires_in": self.token_seconds}  # fmt: skip

    def _subject(self, token: str) -> str:
        """``assertion.sub`` of a subject token the provider accepts."""
        try:
            claims = jwt.decode(
                token, self.issuer.key.public_key(), algorithms=["RS256"],
                audience=self.allowed_audiences, issuer=self.issuer.issuer,
                options={"require": ["iss", "aud", "exp", "sub"]},
            )  # fmt: skip
        except jwt.InvalidAudienceError as exc:
            aud = jwt.decode(token, options={"verify_signature": False}).get("aud")
            shown = ", ".join(aud) if isinstance(aud, list) else aud
            raise oauth_error(
                "invalid_grant",
                f"The audience in ID Token [{shown}] does not match the expected audience.",
            ) from exc
        except jwt.InvalidIssuerError as exc:
            raise oauth_error("invalid_grant", "The issuer in ID Token does not match the "
                              f"expected issuer {self.issuer.issuer}.") from exc  # fmt: skip
        except jwt.ExpiredSignatureError as exc:
            raise oauth_error("invalid_grant", "ID Token has expired.") from exc
        except jwt.InvalidSignatureError as exc:
            raise oauth_error("invalid_grant", "Invalid JWT signature.") from exc
        except jwt.PyJWTError as exc:
            raise oauth_error("invalid_grant", f"Unable to parse the ID Token: {exc}") from exc
        return str(claims["sub"])

    def impersonate(self, account: str, caller: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            allowed = caller in self._impersonators.get(account, set())
        if not allowed:
            raise google_error(
                403, "PERMISSION_DENIED",
                "Permission 'iam.serviceAccounts.getAccessToken' denied on resource "
                "(or it may not exist).",
            )  # fmt: skip
        scopes = body.get("scope")
        if not isinstance(scopes, list) or not scopes:
            raise google_error(400, "INVALID_ARGUMENT", "Scope required.")
        lifetime = min(int(str(body.get("lifetime", "3600s")).rstrip("s")), self.token_seconds)
        with self._lock:
            self.impersonations += 1
            token, expires_at = self._grant(f"serviceAccount:{account}", lifetime, scopes)
        expire = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"accessToken": token, "expireTime": expire}

    def access(self, project: str, name: str, version: str, caller: str) -> dict[str, Any]:
        resource = f"projects/{project}/secrets/{name}/versions/{version}"
        with self._lock:
            secret = self._secrets.get((project, name))
            allowed = caller in self._project_accessors.get(project, set()) or (
                secret is not None and caller in secret.accessors
            )
            if not allowed:
                raise google_error(
                    403, "PERMISSION_DENIED",
                    f"Permission 'secretmanager.versions.access' denied for resource "
                    f"'{resource}' (or it may not exist).",
                )  # fmt: skip
            if secret is None or not secret.versions:
                raise google_error(
                    404, "NOT_FOUND",
                    f"Secret [projects/{project}/secrets/{name}] not found or has no versions.",
                )  # fmt: skip
            number = self._number(secret, version)
            if number is None:
                raise google_error(404, "NOT_FOUND", f"Secret Version [{resource}] not found.")
            entry = secret.versions[number - 1]
            if entry.state != "ENABLED":
                raise google_error(
                    400, "FAILED_PRECONDITION",
                    f"Secret Version [{resource}] is in {entry.state} state.",
                )  # fmt: skip
            self.accesses += 1
            checksum = google_crc32c.value(entry.data) + (1 if self.corrupt > 0 else 0)
            self.corrupt = max(0, self.corrupt - 1)
        return {
            "name": f"projects/{PROJECT_NUMBER}/secrets/{name}/versions/{number}",
            "payload": {"data": base64.b64encode(entry.data).decode(),
                        "dataCrc32c": str(checksum % 2**32)},
        }  # fmt: skip

    @staticmethod
    def _number(secret: Secret, version: str) -> int | None:
        if version == "latest":
            return len(secret.versions) or None
        number = secret.aliases.get(version) or (int(version) if version.isdigit() else 0)
        return number if 0 < number <= len(secret.versions) else None


def _handler(api: GcpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        wbufsize = -1  # headers and body in one write; flushed after each request

        def log_message(self, *args: object) -> None:
            pass

        def setup(self) -> None:
            super().setup()
            with api._lock:
                api.connections.add(self.connection)

        def finish(self) -> None:
            with api._lock:
                api.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: dict[str, Any] | str) -> None:
            html = isinstance(body, str)
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            kind = "text/html" if html else "application/json"
            self.send_header("Content-Type", f"{kind}; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _answer(self, method: str) -> dict[str, Any] | None:
            path = urllib.parse.urlsplit(self.path).path
            auth = self.headers.get("Authorization", "")
            if method == "POST" and path == "/sts/v1/token":
                form = dict(urllib.parse.parse_qsl(self._body().decode()))
                return api.exchange(form)
            if method == "POST" and (match := _IMPERSONATE.fullmatch(path)):
                body = json.loads(self._body() or b"{}")
                return api.impersonate(match[1], api.caller(auth, SCOPE, IAM_SCOPE), body)
            if method == "GET" and (match := _ACCESS.fullmatch(path)):
                project, name, version = match.groups()
                return api.access(project, name, version, api.caller(auth, SCOPE))
            return None

        def _serve(self, method: str) -> None:
            try:
                answer = self._answer(method)
            except Refusal as refusal:
                self._send(refusal.status, refusal.body)
                return
            if answer is None:
                self._send(404, HTML_404)
            else:
                self._send(200, answer)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
