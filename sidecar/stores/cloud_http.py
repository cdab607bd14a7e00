"""What the ``gcp`` and ``azure`` stores share: their HTTPS connections, answers as JSON.

Both clouds are plain JSON-over-HTTPS APIs reached with a bearer token bought
with the projected token; neither needs its SDK on the agent's path. This
module makes the calls and turns transport failures and unreadable answers into
:class:`~sidecar.errors.StoreUnavailable`; each store module decides what an
HTTP error *means* (its own table), since the clouds word them differently.
Nothing here ever puts a request or response body in a message: bodies hold
tokens and secret values.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Mapping
from typing import Any

import msgspec

from sidecar.errors import StoreUnavailable
from sidecar.stores import https
from sidecar.stores.base import MAX_READERS
from sidecar.stores.vault_wire import retry_after, ssl_context

Json = dict[str, Any]
REASON_LIMIT = 300


class Answer(msgspec.Struct, frozen=True):
    """An HTTP answer: its status, its JSON object (empty when the body is not one),
    what to call it in a message when it is not JSON (``text/html``, ``no body``), and
    its headers."""

    status: int
    body: Json
    kind: str
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)

    @property
    def is_json(self) -> bool:
        return self.kind == "json"

    @property
    def retry_after(self) -> float | None:
        return retry_after(self.headers)

    @property
    def date(self) -> float | None:
        """The server's clock (its ``Date`` header, epoch seconds), to time lifetimes by."""
        try:
            return email.utils.parsedate_to_datetime(self.headers.get("date", "")).timestamp()
        except (TypeError, ValueError):
            return None


class Https:
    """The keep-alive connections of one store, a pool to every host it calls; hostnames
    always checked, redirects never followed (the bearer token would go along). The SSL
    context is built once; a host's first call makes its pool, which connects then."""

    def __init__(
        self, ca_bundle: str | None, *, timeout: float, send: https.Send | None = None
    ) -> None:
        self._context = ssl_context(ca_bundle)
        self._timeout = timeout
        self._send = send
        self._pools: dict[str, https.Pool] = {}
        self._lock = threading.Lock()

    def _pool(self, origin: str) -> https.Pool:
        with self._lock:
            if origin not in self._pools:
                self._pools[origin] = https.Pool(
                    origin, context=self._context, timeout=self._timeout, size=MAX_READERS,
                    send=self._send,
                )  # fmt: skip
            return self._pools[origin]

    def call(
        self,
        method: str,
        url: str,
        *,
        what: str,
        where: str,
        headers: Mapping[str, str] | None = None,
        json: Json | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request with a ``json`` or ``form`` body; transport failures, 429 and 5xx
        are StoreUnavailable, naming ``where`` and ``what``. Any other status is the
        caller's to read."""
        origin, target = https.split(url)
        try:
            response = self._pool(origin).request(
                method, target, headers=headers, json=json, form=form
            )
        except https.TimedOut as exc:
            raise StoreUnavailable(f"{where} timed out {what}") from exc
        except https.Unreachable as exc:
            raise StoreUnavailable(f"{where} unreachable {what}: {exc}") from exc
        answer = _answer(response)
        if answer.status == 429 or answer.status >= 500:
            raise StoreUnavailable(
                f"{where} answered {answer.status} {what}: {reason(answer)}",
                retry_after=answer.retry_after,
            )
        if 300 <= answer.status < 400 or answer.status < 200:
            raise StoreUnavailable(
                f"{where} answered {what} with HTTP {answer.status} ({answer.kind}), not an "
                "answer: a redirect is not followed with the token"
            )
        return answer

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()


def _answer(response: https.Response) -> Answer:
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    body: Json = {}
    if not response.body:
        kind = "no body"
    else:
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body, kind = parsed, "json"
    return Answer(response.status, body, kind, response.headers)


def reason(answer: Answer) -> str:
    """The service's own error text, short and on one line; for a body that is not JSON
    (an HTML 404 from a front end) only what it is, never its content."""
    if not answer.is_json:
        return f"HTTP {answer.status} with a {answer.kind} body, not the API's JSON error"
    error = answer.body.get("error")
    text = ""
    if isinstance(error, dict):  # Google {status, message}; Key Vault {code, message}
        parts = (error.get("status") or error.get("code"), error.get("message"))
        text = ": ".join(str(p) for p in parts if p)
    elif isinstance(error, str):  # OAuth 2.0: {"error", "error_description"}
        description = answer.body.get("error_description")
        text = f"{error}: {description}" if description else error
    text = " ".join((text or f"HTTP {answer.status}").split())
    return text[:REASON_LIMIT]
