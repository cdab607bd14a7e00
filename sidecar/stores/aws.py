"""AWS Secrets Manager and SSM Parameter Store, logged in through web identity.

The pod's projected token buys short-lived role credentials from STS
(``AssumeRoleWithWebIdentity``, unsigned, as the AWS SDKs do); they live in
memory only and are bought again before they expire, when the token file
rotates, or once when AWS rejects them mid-run. botocore signs and speaks the
wire protocols; this is the one module that imports it, and only an ``aws``
store imports this module, so the Vault path never pays for botocore.

Also the one place where botocore's errors become the agent's typed errors
(:mod:`sidecar.errors`); messages name the role, region and path plus AWS's own
error text, never a value. Not here: path syntax (:mod:`sidecar.paths.aws`)
and scheduling (the agent's).
"""

from __future__ import annotations

import email.utils
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.parsers import ResponseParserError

from sidecar.auth import TokenFile
from sidecar.config import AwsStore as AwsConfig
from sidecar.errors import (
    AgentError,
    ConfigError,
    SecretNotFound,
    StoreError,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.paths.aws import AwsRef, ParameterPrefix, ParameterRef, SecretRef, parse_path
from sidecar.stores.aws_errors import CredentialsRejected, translate
from sidecar.stores.base import Lease, Secret, boxed

SESSION_SECONDS = 3600  # what STS allows for every role (MaxSessionDuration >= 1h)
REFRESH_MARGIN = 300.0  # buy new credentials this long before the old ones expire
Answer = dict[str, Any]


@dataclass(frozen=True)
class Credentials:
    """Role credentials from STS; held in memory only."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float


def session_name(hostname: str) -> str:
    """``latchkey-<hostname>`` in STS's alphabet: CloudTrail then names the pod."""
    return re.sub(r"[^\w+=,.@-]", "-", f"latchkey-{hostname}", flags=re.ASCII)[:64]


def credentials_life(answer: Answer) -> float:
    """Seconds the credentials have left, by STS's own clock: ``Expiration`` minus the
    answer's ``Date``, so a skewed clock on either side does not shorten or stretch it."""
    expiration = answer["Credentials"]["Expiration"].timestamp()
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        server_now = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        server_now = time.time()  # no usable Date: our own clock is the best guess
    return float(expiration - server_now)


class AwsSecretStore:
    """Role credentials plus botocore clients for one role; safe to share between threads."""

    def __init__(
        self,
        config: AwsConfig,
        *,
        role: str,
        token_file: TokenFile,
        log: Log,
        timeout: float = 10.0,
        max_attempts: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.accessor: str | None = None  # no leases hang off STS credentials
        self.region = config.region
        self.where = f"AWS {config.region}" + (
            f" at {config.endpoint_url}" if config.endpoint_url else ""
        )
        self._endpoint = config.endpoint_url or None
        self._token_file = token_file
        self._log = log
        self._clock = clock
        self._session_name = session_name(socket.gethostname())
        self._config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            user_agent_extra="latchkey",
        )
        self._botocore = botocore.session.Session()
        self._lock = threading.Lock()
        self._sts: Any = None
        self._clients: dict[str, Any] = {}
        self._credentials: Credentials | None = None
        self._refresh_at = 0.0
        self._generation = 0

    # --- botocore and the error boundary ----------------------------------------------

    def _client(self, service: str, credentials: Credentials | None) -> Any:
        keys: dict[str, str] = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
                "aws_session_token": credentials.session_token,
            }
        config = self._config.merge(Config(signature_version=UNSIGNED)) if not keys else None
        return self._botocore.create_client(
            service,
            region_name=self.region,
            endpoint_url=self._endpoint,
            config=config or self._config,
            **keys,
        )

    def _call(
        self, client: Any, operation: str, *, what: str, subject: str = "", **params: Any
    ) -> Answer:
        """One AWS call; ``subject`` is the path being read (empty for the login)."""
        try:
            return dict(getattr(client, operation)(**params))
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            raise translate(
                str(error.get("Code") or status), status, str(error.get("Message") or ""),
                where=self.where, role=self.role, what=what, subject=subject,
            ) from exc  # fmt: skip
        except ParamValidationError as exc:
            raise ConfigError(f"{self.where} refused the request {what}: {exc}") from exc
        except (BotoCoreError, ResponseParserError) as exc:
            raise StoreUnavailable(f"{self.where} unreachable {what}: {exc}") from exc

    # --- the login --------------------------------------------------------------------

    def login(self) -> None:
        with self._lock:
            self._login()

    def _login(self) -> None:
        token = self._token_file.read()
        if self._sts is None:
            self._sts = self._client("sts", None)
        answer = self._call(
            self._sts, "assume_role_with_web_identity",
            what=f"web-identity login as role {self.role}",
            RoleArn=self.role, RoleSessionName=self._session_name,
            WebIdentityToken=token, DurationSeconds=SESSION_SECONDS,
        )  # fmt: skip
        issued = answer["Credentials"]
        self._credentials = Credentials(
            access_key_id=issued["AccessKeyId"],
            secret_access_key=issued["SecretAccessKey"],
            session_token=issued["SessionToken"],
            expires_at=self._clock() + credentials_life(answer),
        )
        self._clients = {}  # reads in flight finish on the old clients
        self._generation += 1
        expires_in = self._credentials.expires_at - self._clock()
        # A margin before expiry, or a third of the life of unusually short credentials.
        self._refresh_at = self._credentials.expires_at - min(REFRESH_MARGIN, expires_in / 3)
        self._log.info("logged in", store=self.where, role=self.role, expires_in=round(expires_in))

    @property
    def refresh_at(self) -> float:
        """When to buy new credentials (the store's clock); now when there are none."""
        return self._refresh_at if self._credentials is not None else self._clock()

    def _refresh(self) -> None:
        """New credentials; while they cannot be had (STS down, a rotated token file
        that is garbled or refused), the old ones serve until they expire and the
        next call tries again, as the Vault store keeps its token."""
        try:
            self._login()
        except AgentError as exc:
            self._token_file.forget()
            assert self._credentials is not None
            if self._clock() >= self._credentials.expires_at:
                raise
            self._log.warning("credentials not refreshed; old ones still valid", reason=str(exc))

    def maintain(self) -> float:
        with self._lock:
            if self._credentials is None:
                self._login()
            elif self._token_file.rotated():
                rotated = str(self._token_file.path)
                self._log.info("token file rotated; logging in again", file=rotated)
                self._refresh()
            elif self._clock() >= self.refresh_at:
                self._refresh()
            return self.refresh_at

    def _session(self, service: str) -> tuple[Any, int]:
        """A client with fresh credentials, and the login generation it belongs to."""
        with self._lock:
            if self._credentials is None:
                self._login()
            elif self._clock() >= self.refresh_at:
                self._refresh()
            if service not in self._clients:
                self._clients[service] = self._client(service, self._credentials)
            return self._clients[service], self._generation

    # --- reads ------------------------------------------------------------------------

    def read(self, path: str) -> Secret:
        ref = parse_path(path)
        service = "secretsmanager" if isinstance(ref, SecretRef) else "ssm"
        client, generation = self._session(service)
        try:
            return self._fetch(client, ref, path)
        except CredentialsRejected as exc:
            with self._lock:
                if self._generation == generation:
                    self._log.info("credentials rejected; logging in again", reason=str(exc))
                    self._login()
        return self._fetch(self._session(service)[0], ref, path)

    def _fetch(self, client: Any, ref: AwsRef, path: str) -> Secret:
        what = f"reading {path}"
        if isinstance(ref, SecretRef):
            params: dict[str, str] = {"SecretId": ref.secret_id}
            if ref.version_stage:
                params["VersionStage"] = ref.version_stage
            if ref.version_id:
                params["VersionId"] = ref.version_id
            answer = self._call(client, "get_secret_value", what=what, subject=path, **params)
            if isinstance(answer.get("SecretString"), str):
                return boxed(path, answer["SecretString"])
            if isinstance(answer.get("SecretBinary"), bytes | bytearray):
                return Secret(path, {"value": bytes(answer["SecretBinary"])}, scalar=True)
            raise StoreUnavailable(f"{self.where} answered {what} with no secret value")
        if isinstance(ref, ParameterRef):
            answer = self._call(
                client, "get_parameter", what=what, subject=path,
                Name=ref.name, WithDecryption=True,
            )  # fmt: skip
            value = (answer.get("Parameter") or {}).get("Value")
            if not isinstance(value, str):
                raise StoreUnavailable(f"{self.where} answered {what} with no parameter value")
            return boxed(path, value)
        return self._by_path(client, ref, path)

    def _by_path(self, client: Any, ref: ParameterPrefix, path: str) -> Secret:
        """Every parameter directly under the prefix, one field per parameter."""
        fields: dict[str, str] = {}
        params: dict[str, Any] = {"Path": ref.path, "Recursive": False, "WithDecryption": True}
        while True:
            answer = self._call(
                client, "get_parameters_by_path", what=f"reading {path}", subject=path, **params
            )
            for parameter in answer.get("Parameters", []):
                fields[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
            if not answer.get("NextToken"):
                break
            params["NextToken"] = answer["NextToken"]
        if not fields:
            raise SecretNotFound(f"no parameters directly under {ref.path} in {self.where}")
        return Secret(path, fields)

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:  # noqa: ARG002
        raise ConfigError(
            f"certificate {path}: AWS stores issue no certificates; use a Vault/OpenBao "
            "store with a PKI engine"
        )

    def renew(self, lease: Lease) -> Lease:
        raise StoreError(f"{self.where} gives no leases; {lease.lease_id} cannot be renewed")

    def close(self, *, revoke: bool) -> None:
        """Forget the credentials and connections. STS credentials cannot be revoked
        one by one, so ``revoke`` can only be logged: they expire within the hour."""
        with self._lock:
            if revoke and self._credentials is not None:
                expires_in = round(self._credentials.expires_at - self._clock())
                self._log.info("aws credentials dropped", role=self.role, expires_in=expires_in)
            for client in [*self._clients.values(), *([self._sts] if self._sts else [])]:
                client.close()
            self._clients, self._sts, self._credentials = {}, None, None
