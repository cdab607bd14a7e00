"""What Vault/OpenBao's HTTP answers mean: typed errors (the one table), secrets, TLS trust.

:mod:`sidecar.stores.vault` makes the calls and hands over the answers; this
module, pure apart from building an SSL context, decides what they mean. The store's own error text
names roles, mounts and paths, never a secret value, so it is kept, short and
on one line, after the address, role and path the agent knows.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

import msgspec

from sidecar.errors import (
    ConfigError,
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    StoreError,
    StoreUnavailable,
)
from sidecar.stores.base import Lease, Secret
from sidecar.stores.https import Response

RETRYABLE = frozenset({412, 429})
REASON_LIMIT = 300
Json = dict[str, Any]


class Where(msgspec.Struct, frozen=True):
    """Who asked what of which store: the names every message carries."""

    address: str
    role: str
    mount: str


def reason(response: Response) -> str:
    """The store's own error text (``{"errors": [...]}``), short and on one line."""
    try:
        errors = response.json().get("errors") or []
        text = "; ".join(str(error) for error in errors)
    except (ValueError, AttributeError):
        text = ""
    text = " ".join((text or response.reason or "no reason given").split())
    return text[:REASON_LIMIT]


def retry_after(headers: Mapping[str, str]) -> float | None:
    """A 429's ``Retry-After`` in seconds (the delta form Vault and the clouds send), if any."""
    try:
        return max(0.0, float(headers.get("retry-after", "")))
    except ValueError:
        return None


def translate(
    response: Response, where: Where, *, what: str, login: bool, subject: str | None
) -> StoreError:
    """The typed error for a 4xx/5xx answer to ``what`` (reading ``subject``, if a read)."""
    status, text, address = response.status, reason(response), where.address
    if status in RETRYABLE or status >= 500:
        wait = retry_after(response.headers) if status == 429 else None
        message = f"store {address} answered {status} {what}: {text}"
        return StoreUnavailable(message, retry_after=wait)
    if login and status in (400, 401, 403, 404):
        return LoginDenied(
            f'store {address} denied login as role "{where.role}" '
            f'at auth mount "{where.mount}": {text}'
        )
    if status == 404 and subject is not None:
        return SecretNotFound(f'nothing at "{subject}" in store {address}')
    if status in (401, 403) and subject is not None:
        return PermissionDenied(
            f'role "{where.role}" may not read "{subject}" at store {address}: {text}'
        )
    if status in (401, 403):
        return PermissionDenied(f"store {address} refused {what}: {text}")
    return StoreError(f"store {address} answered {status} {what}: {text}")


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Trust ``ca_bundle`` (PEM) or the system store; hostnames are always checked."""
    try:
        return ssl.create_default_context(cadata=ca_bundle or None)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"store caBundle is not usable PEM: {exc}") from exc


def parse_secret(path: str, body: Json, *, now: float) -> Secret:
    """A read's answer as the secret's own fields: KV v2 unwrapped, scalars boxed."""
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict) and "data" in data:
        data = data["data"]
        if data is None:
            raise SecretNotFound(f'"{path}" has no current version (deleted or destroyed)')
    lease = None
    if body.get("lease_id"):
        duration = float(body.get("lease_duration") or 0)
        renewable = bool(body.get("renewable"))
        lease = Lease(str(body["lease_id"]), duration, renewable, now + duration)
    if isinstance(data, dict):
        return Secret(path, data, lease)
    return Secret(path, {"value": data}, lease, scalar=True)
