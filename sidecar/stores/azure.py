"""Azure Key Vault, logged in through Microsoft Entra workload identity federation.

The projected token is the client assertion of an app registration or a
user-assigned managed identity federated with the cluster's issuer: one
``client_credentials`` request to Entra's v2.0 token endpoint buys a Key Vault
access token, as azure-identity's ``WorkloadIdentityCredential`` does. Reads are
``GET {vault}/secrets/NAME[/VERSION]``. Plain JSON over HTTPS
(:mod:`sidecar.stores.https`): no Azure SDK, nor any HTTP library, on the agent's path.

Not here: the login schedule (:mod:`sidecar.stores.schedule`), path syntax
(:mod:`sidecar.paths.azure`), what each error answer means
(:mod:`sidecar.stores.azure_errors`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from sidecar.auth import TokenFile
from sidecar.config import GUID_RE, AzureStore
from sidecar.errors import ConfigError, StoreUnavailable
from sidecar.logs import Log
from sidecar.paths.azure import AzureRef, parse_path
from sidecar.stores import azure_errors, cloud_http
from sidecar.stores.base import Secret, boxed
from sidecar.stores.schedule import Held, LoginSchedule

# The Key Vault data-plane version azure-keyvault-secrets 4.12 sends by default (stable).
API_VERSION = "2026-04-01"
SCOPE = "https://vault.azure.net/.default"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AzureSecretStore(LoginSchedule[str, AzureRef]):
    """Entra access tokens for one client id, plus Key Vault reads with them."""

    def __init__(
        self,
        config: AzureStore,
        *,
        role: str,
        token_file: TokenFile,
        log: Log,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(token_file=token_file, log=log, clock=clock)
        if role and not re.fullmatch(GUID_RE, role):
            raise ConfigError(
                f"azure role {role!r} is not a client id: the GUID of an app registration "
                "or user-assigned managed identity, such as 11111111-2222-3333-4444-555555555555"
            )
        self.principal = role or config.client_id
        self.tenant = config.tenant_id
        self.vault_url = config.vault_url.rstrip("/")
        self.where = f"Azure Key Vault {self.vault_url}"
        authority = config.authority_host.rstrip("/")
        self.token_url = f"{authority}/{self.tenant}/oauth2/v2.0/token"
        self.entra = f"Microsoft Entra ID at {authority}"
        self._http = cloud_http.Https(config.ca_bundle, timeout=timeout)

    def _parse(self, path: str) -> AzureRef:
        return parse_path(path)

    def _exchange(self, projected: str) -> Held[str]:
        form = {
            "client_id": self.principal,
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": projected,
            "scope": SCOPE,
        }
        answer = self._http.call(
            "POST", self.token_url, form=form, where=self.entra,
            what=f"logging in as client {self.principal} of tenant {self.tenant}",
        )  # fmt: skip
        if answer.status != 200:
            raise azure_errors.login_denied(
                answer, where=self.entra, client_id=self.principal, tenant=self.tenant,
                projected=projected,
            )  # fmt: skip
        token, life = answer.body.get("access_token"), answer.body.get("expires_in", 0)
        try:
            seconds = float(life)  # v2.0 sends a number, v1.0 a string
        except (TypeError, ValueError):
            seconds = 0.0
        if not isinstance(token, str) or not token or seconds <= 0:
            raise StoreUnavailable(f"{self.entra} answered the login with no usable access token")
        return Held.lasting(token, seconds, now=self._clock())

    def _fetch(self, path: str, ref: AzureRef, token: str) -> Secret:
        answer = self._http.call(
            "GET", f"{self.vault_url}/{ref.url_path}?api-version={API_VERSION}",
            headers={"Authorization": f"Bearer {token}"},
            where=self.where, what=f"getting secret {path}",
        )  # fmt: skip
        if answer.status != 200:
            raise azure_errors.read_denied(
                answer, where=self.where, principal=self.principal, ref=ref
            )
        value = answer.body.get("value")
        if not isinstance(value, str):
            raise StoreUnavailable(f"{self.where} answered getting secret {path} with no value")
        return boxed(path, value)

    def _close_connections(self) -> None:
        self._http.close()
