"""AWS Secrets Manager and SSM Parameter Store, logged in through web identity.

The pod's projected token buys short-lived role credentials from STS
(``AssumeRoleWithWebIdentity``, unsigned, as the AWS SDKs do); they live in
memory only and are bought again before they expire, when the token file
rotates, or once when AWS rejects them mid-run. botocore signs and speaks the
wire protocols; this is the one module that imports it, and only an ``aws``
store imports this module, so the Vault path never pays for botocore.

Also the one place where botocore's errors become the agent's typed errors
(:mod:`sidecar.errors`); messages name the role, region and path plus AWS's own
error text, never a value. Not here: path syntax (:mod:`sidecar.paths.aws`),
when to log in again (:mod:`sidecar.stores.schedule`) and scheduling reads (the agent's).
"""

from __future__ import annotations

import email.utils
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import botocore.session
import msgspec
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from botocore.parsers import ResponseParserError

from sidecar.auth import TokenFile
from sidecar.config import AwsStore as AwsConfig
from sidecar.errors import (
    ConfigError,
    SecretNotFound,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.paths.aws import AwsRef, ParameterPrefix, ParameterRef, SecretRef, parse_path
from sidecar.stores.aws_errors import translate
from sidecar.stores.base import Secret, boxed
from sidecar.stores.schedule import Held, LoginSchedule

SESSION_SECONDS = 3600  # what STS allows for every role (MaxSessionDuration >= 1h)
Answer = dict[str, Any]


class Credentials(msgspec.Struct, frozen=True):
    """Role credentials from STS; held in memory only."""

    access_key_id: str
    secret_access_key: str
    session_token: str


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


class AwsSecretStore(LoginSchedule[Credentials, AwsRef]):
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
        super().__init__(token_file=token_file, log=log, clock=clock)
        self.role = self.principal = role
        self.region = config.region
        self.where = f"AWS {config.region}" + (
            f" at {config.endpoint_url}" if config.endpoint_url else ""
        )
        self._endpoint = config.endpoint_url or None
        self._session_name = session_name(socket.gethostname())
        self._config = Config(
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            user_agent_extra="latchkey",
        )
        self._botocore = botocore.session.Session()
        self._sts: Any = None
        # service -> (the credentials it signs with, client); guarded by its own lock,
        # since reads make clients outside the schedule's.
        self._clients: dict[str, tuple[Credentials, Any]] = {}
        self._clients_lock = threading.Lock()

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

    def _exchange(self, projected: str) -> Held[Credentials]:
        if self._sts is None:
            self._sts = self._client("sts", None)
        answer = self._call(
            self._sts, "assume_role_with_web_identity",
            what=f"web-identity login as role {self.role}",
            RoleArn=self.role, RoleSessionName=self._session_name,
            WebIdentityToken=projected, DurationSeconds=SESSION_SECONDS,
        )  # fmt: skip
        issued = answer["Credentials"]
        credentials = Credentials(
            access_key_id=issued["AccessKeyId"],
            secret_access_key=issued["SecretAccessKey"],
            session_token=issued["SessionToken"],
        )
        return Held.lasting(credentials, credentials_life(answer), now=self._clock())

    def _session(self, service: str, credentials: Credentials) -> Any:
        """The client of ``service`` signing with ``credentials``, made once per login
        (reads in flight when new credentials come finish on the old client)."""
        with self._clients_lock:
            made = self._clients.get(service)
            if made is None or made[0] is not credentials:
                made = (credentials, self._client(service, credentials))
                self._clients[service] = made
            return made[1]

    # --- reads ------------------------------------------------------------------------

    def _parse(self, path: str) -> AwsRef:
        return parse_path(path)

    def _fetch(self, path: str, ref: AwsRef, credentials: Credentials) -> Secret:
        service = "secretsmanager" if isinstance(ref, SecretRef) else "ssm"
        client = self._session(service, credentials)
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

    def _close_connections(self) -> None:
        with self._clients_lock:
            for _, client in self._clients.values():
                client.close()
            if self._sts is not None:
                self._sts.close()
            self._clients, self._sts = {}, None
