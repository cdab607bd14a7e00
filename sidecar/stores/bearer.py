"""Stores reached with a bearer token bought with the projected token (``gcp``, ``azure``).

The cloud's token lives in memory only and is bought again shortly before it
expires, when the projected token file rotates, or once when the cloud rejects
it mid-run (401). While a new one cannot be had, the old one serves until it
expires, as the Vault store keeps its token. Each cloud's module says how to buy
a token (:meth:`BearerStore._exchange`) and how to read a path with it
(:meth:`BearerStore._fetch`); the scheduling here is the same for both.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.auth import TokenFile
from sidecar.errors import AgentError, ConfigError, LoginDenied, StoreError
from sidecar.logs import Log
from sidecar.stores.base import Lease, Secret
from sidecar.stores.cloud_http import AccessToken


class TokenRejected(LoginDenied):
    """The cloud no longer accepts the access token (expired, revoked): log in again."""


def token_claims(token: str) -> dict[str, Any]:
    """The projected token's claims, unverified, to name its issuer, subject and audience
    in a denial (they are not secret; the signature is not shown). Empty when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def identity(token: str) -> str:
    """``issuer I, subject S, audience A`` of a projected token, for denials."""
    claims = token_claims(token)
    aud = claims.get("aud")
    audience = ", ".join(aud) if isinstance(aud, list) else aud
    return (
        f"issuer {claims.get('iss', '?')}, subject {claims.get('sub', '?')}, "
        f"audience {audience or '?'}"
    )


class BearerStore:
    """The login and refresh schedule of a bearer-token store; safe to share between threads.

    Subclasses set ``where`` (named in every message) and ``principal`` (who the token
    is for), and implement :meth:`_exchange` and :meth:`_fetch`.
    """

    where = "cloud store"
    principal = ""

    def __init__(
        self, *, token_file: TokenFile, log: Log, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.accessor: str | None = None  # no leases hang off a cloud access token
        self._token_file = token_file
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._generation = 0

    # --- what each cloud says ---------------------------------------------------------

    def _exchange(self, projected: str) -> AccessToken:
        """An access token for the projected token; LoginDenied naming what the cloud
        expected when it is refused."""
        raise NotImplementedError

    def _fetch(self, path: str, token: str) -> Secret:
        """Read ``path`` with the access token; TokenRejected when it is no good."""
        raise NotImplementedError

    def _close_connections(self) -> None:
        """Close the store's HTTP connections."""

    # --- the schedule -----------------------------------------------------------------

    def login(self) -> None:
        with self._lock:
            self._login()

    def _login(self) -> None:
        self._token = self._exchange(self._token_file.read())
        self._generation += 1
        expires_in = round(self._token.expires_at - self._clock())
        self._log.info(
            "logged in", store=self.where, principal=self.principal, expires_in=expires_in
        )

    @property
    def refresh_at(self) -> float:
        """When to buy a new access token (monotonic); now when there is none."""
        return self._token.refresh_at if self._token is not None else self._clock()

    def _refresh(self) -> None:
        try:
            self._login()
        except AgentError as exc:
            self._token_file.forget()
            assert self._token is not None
            if self._clock() >= self._token.expires_at:
                raise
            self._log.warning("access token not refreshed; old one still valid", reason=str(exc))

    def maintain(self) -> float:
        with self._lock:
            if self._token is None:
                self._login()
            elif self._token_file.rotated():
                rotated = str(self._token_file.path)
                self._log.info("token file rotated; logging in again", file=rotated)
                self._refresh()
            elif self._clock() >= self.refresh_at:
                self._refresh()
            return self.refresh_at

    def _current(self) -> tuple[str, int]:
        """A fresh access token, and the login generation it belongs to."""
        with self._lock:
            if self._token is None:
                self._login()
            elif self._clock() >= self.refresh_at:
                self._refresh()
            assert self._token is not None
            return self._token.token, self._generation

    def read(self, path: str) -> Secret:
        token, generation = self._current()
        try:
            return self._fetch(path, token)
        except TokenRejected as exc:
            with self._lock:
                if self._generation == generation:
                    self._log.info("access token rejected; logging in again", reason=str(exc))
                    self._login()
        return self._fetch(path, self._current()[0])

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:  # noqa: ARG002
        raise ConfigError(
            f"certificate {path}: {self.where} issues no certificates; use a Vault/OpenBao "
            "store with a PKI engine"
        )

    def renew(self, lease: Lease) -> Lease:
        raise StoreError(f"{self.where} gives no leases; {lease.lease_id} cannot be renewed")

    def close(self, *, revoke: bool) -> None:
        """Forget the access token and close connections. Cloud access tokens cannot be
        revoked one by one, so ``revoke`` can only be logged: they expire within the hour."""
        with self._lock:
            if revoke and self._token is not None:
                expires_in = round(self._token.expires_at - self._clock())
                self._log.info("access token dropped", store=self.where, expires_in=expires_in)
            self._token = None
            self._close_connections()
