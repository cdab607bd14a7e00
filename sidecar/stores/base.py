"""What every store kind offers the agent: log in, read, renew, revoke.

One module per store kind implements :class:`Store`; the agent loop knows only
this protocol. Store modules translate their foreign errors (HTTP, botocore)
into :mod:`sidecar.errors` at this boundary.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

# Paths read at once: the agent's reader threads, and so each store's connection pool.
MAX_READERS = 8


class Lease(msgspec.Struct, frozen=True):
    """A store lease on a dynamic secret; renew before ``expires_at``.

    ``expires_at`` is on the agent's monotonic clock, computed at receipt from the
    lease's relative duration: the store's clock never enters into it.
    """

    lease_id: str
    duration: float
    renewable: bool
    expires_at: float


class Secret(msgspec.Struct, frozen=True):
    """One store path's fields; ``lease`` is None for static (KV) secrets.

    A value that is not a JSON object becomes ``{"value": it}`` with ``scalar`` set,
    so its file holds the raw value by default (SPEC: paths).
    """

    path: str
    fields: Mapping[str, Any]
    lease: Lease | None = None
    scalar: bool = False


def boxed(path: str, text: str) -> Secret:
    """A JSON object's fields, or the text itself as the one field ``value`` (SPEC: the
    ``aws`` rule, which the ``gcp`` and ``azure`` stores follow too)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return Secret(path, parsed)
    return Secret(path, {"value": text}, scalar=True)


class Store(Protocol):
    """A secret store the agent is logged in to.

    ``accessor`` names the current login (Vault's token accessor) where leases
    hang off it, so leases saved by one run are adopted only with that login.
    """

    @property
    def accessor(self) -> str | None:
        """The current login's name, or None (not logged in, or no leases hang off it)."""

    def login(self) -> None:
        """Log in with the projected token, read fresh from its file."""

    def read(self, path: str) -> Secret:
        """Read one logical path (without any ``#key``)."""

    def renew(self, lease: Lease) -> Lease:
        """Renew a lease; raise StoreError when it cannot be renewed."""

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:
        """A write that returns a secret (a certificate from a PKI engine), its lifetime
        as a lease that cannot be renewed; ConfigError where the store has none."""

    def maintain(self) -> float:
        """Keep the login alive: renew it when due, log in again when the token file
        rotated or the login cannot be renewed. Returns when to call again (monotonic)."""

    def close(self, *, revoke: bool) -> None:
        """Release connections; revoke the store token when ``revoke``."""
