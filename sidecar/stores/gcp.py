"""Google Cloud Secret Manager, logged in through workload identity federation.

The projected token is exchanged at Google's STS for a federated access token
(RFC 8693, form-encoded, as google-auth sends it); when a service account is
named (the pod's ``role``, else the store's ``serviceAccount``) that token buys
the service account's own from IAM Credentials (``generateAccessToken``). Reads
are ``GET v1/{version}:access``, their CRC-32C checked. Plain JSON over HTTPS
(:mod:`sidecar.stores.https`): no Google SDK, nor any HTTP library, on the agent's path.

Not here: the login schedule (:mod:`sidecar.stores.schedule`), path syntax
(:mod:`sidecar.paths.gcp`), what each error answer means
(:mod:`sidecar.stores.gcp_errors`).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable
from datetime import datetime

from sidecar.auth import TokenFile, token_claims
from sidecar.auth import identity as token_identity
from sidecar.config import GcpStore, as_dict
from sidecar.errors import StoreUnavailable
from sidecar.logs import Log
from sidecar.paths.gcp import GcpRef, parse_path
from sidecar.stores import cloud_http, gcp_errors
from sidecar.stores.base import Secret, boxed
from sidecar.stores.cloud_http import Answer
from sidecar.stores.crc32c import crc32c
from sidecar.stores.schedule import Held, LoginSchedule

GOOGLE = {
    "sts": "https://sts.googleapis.com",
    "iamcredentials": "https://iamcredentials.googleapis.com",
    "secretmanager": "https://secretmanager.googleapis.com",
}
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
JWT_TOKEN = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
LIFETIME = 3600  # seconds asked of generateAccessToken: its default and maximum


def sts_audience(provider: str) -> str:
    """The ``audience`` of the STS exchange: the provider's full resource name."""
    return f"//iam.googleapis.com/{provider}"


def expire_time(text: object) -> float:
    """An RFC 3339 ``expireTime`` (``2024-05-01T12:00:00Z``, fractions allowed) as epoch
    seconds; ValueError when it is not one."""
    if not isinstance(text, str):
        raise ValueError("no expireTime")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("expireTime without a time zone")
    return parsed.timestamp()


class GcpSecretStore(LoginSchedule[str, GcpRef]):
    """Federated (and optionally impersonated) access tokens plus Secret Manager reads."""

    def __init__(
        self,
        config: GcpStore,
        *,
        role: str,
        token_file: TokenFile,
        log: Log,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(token_file=token_file, log=log, clock=clock)
        self.project = config.project
        self.provider = config.workload_identity_provider
        self.service_account = role or config.service_account or ""
        self.principal = self.service_account or "the federated principal"
        overrides = as_dict(config.endpoints)
        self._urls = {name: url.rstrip("/") for name, url in (GOOGLE | overrides).items()}
        self._names = {
            name: label + (f" at {self._urls[name]}" if name in overrides else "")
            for name, label in (
                ("sts", "Google STS"),
                ("iamcredentials", "Google IAM Credentials"),
                ("secretmanager", "Google Secret Manager"),
            )
        }
        self.where = self._names["secretmanager"]
        self._http = cloud_http.Https(config.ca_bundle, timeout=timeout)

    # --- the login ----------------------------------------------------------------------

    def _exchange(self, projected: str) -> Held[str]:
        subject = token_claims(projected).get("sub", "?")
        federated = gcp_errors.federated_principal(self.provider, str(subject))
        self.principal = self.service_account or federated
        token = self._federated(projected)
        if not self.service_account:
            return token
        return self._impersonated(token.value, federated)

    def _federated(self, projected: str) -> Held[str]:
        where, audience = self._names["sts"], sts_audience(self.provider)
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "audience": audience,
            "scope": SCOPE,
            "requested_token_type": ACCESS_TOKEN,
            "subject_token": projected,
            "subject_token_type": JWT_TOKEN,
        }
        answer = self._http.call(
            "POST", f"{self._urls['sts']}/v1/token",
            what="exchanging the projected token", where=where, form=form,
        )  # fmt: skip
        if answer.status != 200:
            raise gcp_errors.exchange_denied(
                answer, where=where, audience=audience, identity=token_identity(projected)
            )
        token, life = answer.body.get("access_token"), answer.body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(life, int | float):
            raise StoreUnavailable(f"{where} answered the exchange with no access token")
        return Held.lasting(token, float(life), now=self._clock())

    def _impersonated(self, federated: str, principal: str) -> Held[str]:
        where, account = self._names["iamcredentials"], self.service_account
        url = f"{self._urls['iamcredentials']}/v1/projects/-/serviceAccounts/{account}"
        answer = self._http.call(
            "POST", f"{url}:generateAccessToken",
            what=f"impersonating {account}", where=where,
            headers={"Authorization": f"Bearer {federated}"},
            json={"scope": [SCOPE], "lifetime": f"{LIFETIME}s"},
        )  # fmt: skip
        if answer.status != 200:
            raise gcp_errors.impersonation_denied(
                answer, where=where, principal=principal, service_account=account
            )
        token = answer.body.get("accessToken")
        try:
            life = expire_time(answer.body.get("expireTime")) - (answer.date or time.time())
        except ValueError:
            life = 0.0
        if not isinstance(token, str) or not token or life <= 0:
            raise StoreUnavailable(f"{where} answered for {account} with no usable access token")
        return Held.lasting(token, life, now=self._clock())

    # --- reads --------------------------------------------------------------------------

    def _parse(self, path: str) -> GcpRef:
        return parse_path(path, project=self.project)

    def _fetch(self, path: str, ref: GcpRef, token: str) -> Secret:
        answer = self._http.call(
            "GET", f"{self._urls['secretmanager']}/v1/{ref.resource}:access",
            what=f"reading {path}", where=self.where,
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        if answer.status != 200:
            raise gcp_errors.read_failed(
                answer, where=self.where, principal=self.principal, path=path, ref=ref
            )
        return self._secret(path, ref, answer)

    def _secret(self, path: str, ref: GcpRef, answer: Answer) -> Secret:
        """The payload, checked against its CRC-32C; text boxed as the aws rule says,
        other bytes kept as they are."""
        payload = answer.body.get("payload")
        data = payload.get("data", "") if isinstance(payload, dict) else None
        try:
            value = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except binascii.Error:
            value = None
        if value is None:
            raise StoreUnavailable(f"{self.where} answered {path} with no readable payload")
        checksum = payload.get("dataCrc32c") if isinstance(payload, dict) else None
        if checksum is not None and str(checksum) != str(crc32c(value)):
            raise StoreUnavailable(
                f"{self.where} answered {path} ({ref.resource}) with a payload whose CRC-32C "
                "does not match its checksum: corrupted on the way; will read again"
            )
        try:
            return boxed(path, value.decode("utf-8"))
        except UnicodeDecodeError:
            return Secret(path, {"value": value}, scalar=True)

    def _close_connections(self) -> None:
        self._http.close()
