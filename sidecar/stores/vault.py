"""Vault and OpenBao over their HTTP API: log in, read, renew, revoke.

The one place where HTTP answers and transport failures become the agent's
typed errors (:mod:`sidecar.errors`); nothing above this module sees an
HTTP answer or a socket's error.
Messages name the store, role, auth mount and path, plus the store's own
error text, which names things but never holds a secret value.

Not here: scheduling (when to renew, when to read again) is the agent's; this
module only says when its own login wants attention (:meth:`VaultStore.maintain`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from sidecar.auth import EnvToken, TokenFile
from sidecar.config import VaultStore as VaultConfig
from sidecar.errors import (
    AgentError,
    LoginDenied,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
)
from sidecar.logs import Log
from sidecar.state import SavedToken, StateDir
from sidecar.stores import https
from sidecar.stores.base import MAX_READERS, Lease, Secret
from sidecar.stores.vault_wire import Json, Where, parse_secret, ssl_context, translate

RENEW_AT = 2 / 3  # of a TTL: renew then, leaving a third for retries
MIN_ADOPT_TTL = 10.0  # a saved token closer than this to its end is not worth a lookup


class VaultStore:
    """A logged-in (or about to be) Vault/OpenBao client; safe to share between threads."""

    def __init__(
        self,
        config: VaultConfig,
        *,
        role: str,
        token_file: TokenFile | EnvToken,
        log: Log,
        timeout: float = 10.0,
        send: https.Send | None = None,
        clock: Callable[[], float] = time.monotonic,
        state: StateDir | None = None,
    ) -> None:
        self.address = config.address.rstrip("/")
        self.role = role
        self.mount = config.auth.mount_path
        self.accessor: str | None = None
        self._where = Where(self.address, role, self.mount)
        self._owner = f"{self.address}|{config.namespace}|{self.mount}|{role}"
        self._token_file = token_file
        self._state = state
        self._log = log
        self._clock = clock
        self._timeout = timeout
        self._headers = {"X-Vault-Namespace": config.namespace} if config.namespace else {}
        origin, base = https.split(self.address)
        self._base = f"{base.rstrip('/')}/v1/"
        self._http = https.Pool(
            origin, context=ssl_context(config.ca_bundle), timeout=timeout, size=MAX_READERS,
            send=send,
        )  # fmt: skip
        self._lock = threading.Lock()
        self._token: str | None = None
        self._generation = 0
        self._ttl = 0.0
        self._renew_at = float("inf")
        self._expires_at = float("inf")
        self._renewable = False
        # A store token we are given is not ours: never saved, renewed or revoked.
        self._given_token = config.auth.method == "token"
        self._adoptable = state is not None and not self._given_token

    # --- HTTP and the error boundary -----------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        token: str | None,
        body: Json | None = None,
        subject: str | None = None,
        need_data: bool = False,
    ) -> Json:
        """One API call; any answer but a JSON object (with ``data`` when ``need_data``)
        is an error that names the status and content type, never the body."""
        headers = {**self._headers, "X-Vault-Token": token} if token else self._headers
        try:
            response = self._http.request(method, self._base + path, headers=headers, json=body)
        except https.TimedOut as exc:
            raise StoreUnavailable(
                f"store {self.address} timed out {what} (after {self._timeout:g}s)"
            ) from exc
        except https.Unreachable as exc:
            raise StoreUnavailable(f"store {self.address} unreachable {what}: {exc}") from exc
        status = response.status
        if status >= 400:
            login = path.startswith("auth/") and path.endswith("/login")
            raise translate(response, self._where, what=what, login=login, subject=subject)
        kind = response.headers.get("content-type", "none").split(";")[0].strip() or "none"
        if status >= 300 or status < 200:
            # Never followed: the token would go with the request to wherever it points.
            raise StoreUnavailable(
                f"store {self.address} answered {what} with HTTP {status} ({kind}), not an "
                "answer: a redirect is not followed with the token (a standby node or an "
                "ingress in front? point the agent at the active node)"
            )
        if not response.body:
            if need_data:
                raise StoreUnavailable(
                    f"store {self.address} answered {what} with HTTP {status} and no body"
                )
            return {}
        try:
            answer = response.json()
        except ValueError as exc:
            raise StoreUnavailable(
                f"store {self.address} answered {what} with HTTP {status} ({kind}), not JSON"
            ) from exc
        if not isinstance(answer, dict) or (need_data and answer.get("data") is None):
            raise StoreUnavailable(
                f"store {self.address} answered {what} with HTTP {status} ({kind}) but no data"
            )
        return answer

    # --- the login -----------------------------------------------------------------

    def login(self) -> None:
        with self._lock:
            self._login()

    def _login(self) -> None:
        if self._given_token:
            self._take_given_token()
            return
        jwt = self._token_file.read()
        what = f'logging in as role "{self.role}" at auth mount "{self.mount}"'
        body = self._call(
            "POST", f"auth/{self.mount}/login", what=what, token=None,
            body={"role": self.role, "jwt": jwt},
        )  # fmt: skip
        auth = body.get("auth") or {}
        if not auth.get("client_token"):
            raise LoginDenied(f"store {self.address} answered {what} without a token")
        self._token = str(auth["client_token"])
        self.accessor = str(auth.get("accessor") or "") or None
        self._generation += 1
        ttl = float(auth.get("lease_duration") or 0)
        self._set_ttl(ttl, remaining=ttl, renewable=bool(auth.get("renewable")))
        self._log.debug(
            "logged in", store=self.address, role=self.role, mount=self.mount, ttl=self._ttl
        )

    def _take_given_token(self) -> None:
        """Token auth: check the given token and use it; at two thirds of its life left
        it is looked up again (re-read, when it comes from a file)."""
        token = self._token_file.read()
        source = self._token_file.path
        try:
            body = self._call(
                "GET", "auth/token/lookup-self", what=f"checking the store token from {source}",
                token=token,
            )  # fmt: skip
        except PermissionDenied as exc:
            raise LoginDenied(
                f"store {self.address} refused the store token from {source}: "
                "it is invalid, expired or revoked"
            ) from exc
        remaining = float((body.get("data") or {}).get("ttl") or 0)
        self._token, self.accessor = token, None
        self._generation += 1
        self._set_ttl(remaining, remaining=remaining, renewable=False)
        self._log.info("using the given store token", store=self.address, source=str(source))

    def _set_ttl(self, ttl: float, *, remaining: float, renewable: bool) -> None:
        """``ttl``: the token's full TTL (what renewals ask for); ``remaining``: its life left."""
        now = self._clock()
        self._ttl, self._renewable = ttl, renewable
        self._renew_at = now + remaining * RENEW_AT if remaining > 0 else float("inf")
        self._expires_at = now + remaining if remaining > 0 else float("inf")
        if self._state is not None and self._token is not None and self.accessor:
            saved = SavedToken(self._token, self.accessor, self._owner, self._expires_at)
            self._state.save_token(saved)

    def _ensure_login(self) -> None:
        """Adopt the token a previous run of this agent left in ``stateDir``, else log in."""
        if self._adoptable and self._adopt():
            return
        self._login()

    def _adopt(self) -> bool:
        assert self._state is not None
        saved = self._state.load_token(self._owner)
        if saved is None:
            self._adoptable = False
            return False
        try:
            body = self._call(
                "GET", "auth/token/lookup-self", what="checking the saved store token",
                token=saved.token,
            )  # fmt: skip
        except StoreUnavailable:
            raise  # try again on the next attempt
        except StoreError:
            body = {}
        self._adoptable = False
        data = body.get("data") or {}
        remaining = float(data.get("ttl") or 0)
        if remaining < MIN_ADOPT_TTL:
            self._log.info("saved store token no longer valid; logging in", role=self.role)
            return False
        self._token, self.accessor = saved.token, saved.accessor
        self._generation += 1
        full = float(data.get("creation_ttl") or remaining)
        self._set_ttl(full, remaining=remaining, renewable=bool(data.get("renewable")))
        self._token_file.remember()
        self._log.info("store token from the last run adopted", role=self.role, ttl=remaining)
        return True

    def _session(self) -> tuple[str, int]:
        with self._lock:
            if self._token is None:
                self._ensure_login()
            assert self._token is not None
            return self._token, self._generation

    def maintain(self) -> float:
        with self._lock:
            if self._token is None:
                self._ensure_login()
            elif self._token_file.rotated():
                self._log.info(
                    "token file rotated; logging in again", file=str(self._token_file.path)
                )
                self._login_keeping_current()
            if self._clock() >= self._renew_at:
                self._renew_login()
            return self._renew_at

    def _login_keeping_current(self) -> None:
        """A new login; while it fails (a garbled or expired new token file, an outage),
        the current store token serves (renewed as usual) until it ends; the next call
        tries again."""
        try:
            self._login()
        except AgentError as exc:
            self._token_file.forget()
            if self._clock() >= self._expires_at:
                raise
            self._log.warning(
                "new login failed; the current store token still serves", error=str(exc)
            )

    def _renew_login(self) -> None:
        """Renew the store token, or log in again when it cannot be renewed (any more)."""
        if not self._renewable:
            self._login()
            return
        try:
            body = self._call(
                "POST", "auth/token/renew-self", what="renewing the store token",
                token=self._token, body={"increment": int(self._ttl)},
            )  # fmt: skip
        except StoreError as exc:  # even a 500: OpenBao answers "past the max TTL" so
            self._log.warning("store token not renewed; logging in again", reason=str(exc))
            self._login()
            return
        ttl = float((body.get("auth") or {}).get("lease_duration") or 0)
        # A shorter TTL than asked means the max TTL is near: log in again next time.
        self._set_ttl(ttl, remaining=ttl, renewable=ttl >= self._ttl)
        self._log.info("store token renewed", store=self.address, role=self.role, ttl=ttl)

    # --- reads and leases ----------------------------------------------------------

    def read(self, path: str) -> Secret:
        token, generation = self._session()
        try:
            return self._read(path, token)
        except PermissionDenied:
            if self._token_alive(token):
                raise
        # The store forgot our token (restart, revocation): log in once more.
        with self._lock:
            if self._generation == generation:
                self._log.info("store token no longer valid; logging in again", role=self.role)
                self._login()
        return self._read(path, self._session()[0])

    def _read(self, path: str, token: str) -> Secret:
        what = f'reading "{path}"'
        body = self._call(
            "GET", path.lstrip("/"), what=what, token=token, subject=path, need_data=True
        )
        return parse_secret(path, body, now=self._clock())

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:
        """``PUT path`` with ``params`` (a PKI ``issue``): the certificate's fields, its
        remaining life (``expiration`` is the store's wall clock) as a lease that
        cannot be renewed, so the loop issues again at 2/3 of it."""
        token, _ = self._session()
        what = f'issuing a certificate at "{path}"'
        body = self._call(
            "PUT", path.lstrip("/"), what=what, token=token, body=dict(params), subject=path,
            need_data=True,
        )  # fmt: skip
        data = body["data"]
        if not all(isinstance(data.get(k), str) for k in ("certificate", "private_key")):
            raise StoreUnavailable(f"store {self.address} answered {what} with no certificate")
        life = float(data.get("expiration") or 0) - time.time()
        if life <= 0:
            raise StoreUnavailable(f"store {self.address} answered {what} with an expired one")
        serial = str(data.get("serial_number") or "")
        lease = Lease(f"certificate:{serial}", life, False, self._clock() + life)
        self._log.info("certificate issued", path=path, serial=serial, ttl=round(life))
        return Secret(path, data, lease)

    def _token_alive(self, token: str) -> bool:
        try:
            self._call(
                "GET", "auth/token/lookup-self", what="checking the store token", token=token
            )
        except PermissionDenied:
            return False
        return True

    def renew(self, lease: Lease) -> Lease:
        token, _ = self._session()
        body = self._call(
            "PUT", "sys/leases/renew", what=f"renewing lease {lease.lease_id}", token=token,
            body={"lease_id": lease.lease_id, "increment": int(lease.duration)},
        )  # fmt: skip
        duration = float(body.get("lease_duration") or 0)
        lease_id = str(body.get("lease_id") or lease.lease_id)
        return Lease(lease_id, duration, bool(body.get("renewable")), self._clock() + duration)

    def close(self, *, revoke: bool) -> None:
        token, self._token = self._token, None
        if revoke and token and not self._given_token:
            try:
                self._call(
                    "POST", "auth/token/revoke-self", what="revoking the store token", token=token
                )
                self._log.info("store token revoked", store=self.address, role=self.role)
            except StoreError as exc:
                self._log.warning("store token not revoked", reason=str(exc))
            if self._state is not None:
                self._state.forget()  # its leases died with it
        self._http.close()
