"""The login schedule of the cloud stores (``aws``, ``gcp``, ``azure``).

Each buys short-lived credentials with the projected token (AWS role credentials,
a Google or Entra access token) and keeps them in memory only. They are bought
again shortly before they expire, when the projected token file rotates, or once
when the cloud rejects them mid-run. While new ones cannot be had, the old ones
serve until they expire, as the Vault store keeps its token. Each cloud's module
says how to buy them (:meth:`LoginSchedule._exchange`) and how to read a path with
them (:meth:`LoginSchedule._fetch`); when is decided here, once for all three.
Standard library only: the aws path must not pay for httpx.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

import msgspec

from sidecar.auth import TokenFile
from sidecar.errors import AgentError, ConfigError, LoginDenied, StoreError
from sidecar.logs import Log
from sidecar.stores.base import Lease, Secret

REFRESH_MARGIN = 300.0  # buy new credentials this long before the old ones expire
T = TypeVar("T")  # what a login buys: role credentials, an access token
R = TypeVar("R")  # what a path names, parsed


class LoginRejected(LoginDenied):
    """The cloud no longer accepts the credentials (expired, revoked): log in again."""


class Held(msgspec.Struct, Generic[T], frozen=True):
    """Credentials bought by a login, held in memory only; times on the monotonic clock."""

    value: T
    expires_at: float
    refresh_at: float

    @classmethod
    def lasting(cls, value: T, seconds: float, *, now: float) -> Held[T]:
        """Credentials good for ``seconds`` from ``now``, bought again a margin before they
        end (or at two thirds of an unusually short life)."""
        return cls(value, now + seconds, now + seconds - min(REFRESH_MARGIN, seconds / 3))


class LoginSchedule(Generic[T, R]):
    """When a cloud store logs in; safe to share between threads.

    Subclasses set ``where`` (named in every message) and ``principal`` (who the
    credentials are for), and implement :meth:`_parse`, :meth:`_exchange` and
    :meth:`_fetch`.
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
        self._held: Held[T] | None = None
        self._generation = 0

    # --- what each cloud says ---------------------------------------------------------

    def _exchange(self, projected: str) -> Held[T]:
        """Credentials for the projected token; LoginDenied naming what the cloud
        expected when it is refused."""
        raise NotImplementedError

    def _parse(self, path: str) -> R:
        """What ``path`` names; ConfigError naming it and the valid forms."""
        raise NotImplementedError

    def _fetch(self, path: str, ref: R, credentials: T) -> Secret:
        """Read ``ref`` (``path`` parsed) with the credentials; LoginRejected when they
        are no good."""
        raise NotImplementedError

    def _close_connections(self) -> None:
        """Close the store's HTTP connections."""

    # --- the schedule -----------------------------------------------------------------

    def login(self) -> None:
        with self._lock:
            self._login()

    def _login(self) -> None:
        self._held = self._exchange(self._token_file.read())
        self._generation += 1
        expires_in = round(self._held.expires_at - self._clock())
        self._log.info(
            "logged in", store=self.where, principal=self.principal, expires_in=expires_in
        )

    @property
    def refresh_at(self) -> float:
        """When to buy new credentials (monotonic); now when there are none."""
        return self._held.refresh_at if self._held is not None else self._clock()

    def _refresh(self) -> None:
        try:
            self._login()
        except AgentError as exc:
            self._token_file.forget()
            assert self._held is not None
            if self._clock() >= self._held.expires_at:
                raise
            self._log.warning("credentials not refreshed; old ones still valid", reason=str(exc))

    def _keep_fresh(self) -> Held[T]:
        """Credentials now, bought or refreshed when there are none or they are due;
        call with the lock held."""
        if self._held is None:
            self._login()
        elif self._clock() >= self.refresh_at:
            self._refresh()
        assert self._held is not None
        return self._held

    def maintain(self) -> float:
        with self._lock:
            if self._held is not None and self._token_file.rotated():
                rotated = str(self._token_file.path)
                self._log.info("token file rotated; logging in again", file=rotated)
                self._refresh()
            return self._keep_fresh().refresh_at

    def _current(self) -> tuple[T, int]:
        """Fresh credentials, and the login generation they belong to."""
        with self._lock:
            return self._keep_fresh().value, self._generation

    def read(self, path: str) -> Secret:
        ref = self._parse(path)  # a path that can never be read fails before any login
        credentials, generation = self._current()
        try:
            return self._fetch(path, ref, credentials)
        except LoginRejected as exc:
            with self._lock:
                if self._generation == generation:
                    self._log.info("credentials rejected; logging in again", reason=str(exc))
                    self._login()
        return self._fetch(path, ref, self._current()[0])

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:  # noqa: ARG002
        raise ConfigError(
            f"certificate {path}: {self.where} issues no certificates; use a Vault/OpenBao "
            "store with a PKI engine"
        )

    def renew(self, lease: Lease) -> Lease:
        raise StoreError(f"{self.where} gives no leases; {lease.lease_id} cannot be renewed")

    def close(self, *, revoke: bool) -> None:
        """Forget the credentials and close connections. No cloud revokes these one by
        one, so ``revoke`` can only be logged: they expire within the hour."""
        with self._lock:
            if revoke and self._held is not None:
                expires_in = round(self._held.expires_at - self._clock())
                self._log.info("credentials dropped", store=self.where, expires_in=expires_in)
            self._held = None
            self._close_connections()
