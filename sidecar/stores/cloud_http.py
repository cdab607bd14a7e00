"""What the ``gcp`` and ``azure`` stores share: one HTTPS client, answers as JSON.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from sidecar.errors import StoreUnavailable
from sidecar.stores.base import MAX_READERS
from sidecar.stores.vault_wire import retry_after, ssl_context

Json = dict[str, Any]
REASON_LIMIT = 300


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, its JSON object (empty when the body is not one),
    what to call it in a message when it is not JSON (``text/html``, ``no body``), and
    its headers."""

    status: int
    body: Json
    kind: str
    headers: Mapping[str, str] = field(default_factory=dict)

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
    """The keep-alive connections of one store, to every host it calls; hostnames always
    checked, redirects never followed (the bearer token would go along). The SSL context
    is built once; the client is made at the first call, and again after :meth:`close`."""

    def __init__(
        self,
        ca_bundle: str | None,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._verify = ssl_context(ca_bundle)
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.Client | None = None

    def _connected(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                verify=self._verify,
                timeout=self._timeout,
                limits=httpx.Limits(
                    max_connections=MAX_READERS, max_keepalive_connections=MAX_READERS
                ),
                trust_env=False,
                follow_redirects=False,
                transport=self._transport,
            )
        return self._client

    def call(self, method: str, url: str, *, what: str, where: str, **kwargs: Any) -> Answer:
        """One request; transport failures, 429 and 5xx are StoreUnavailable, naming
        ``where`` and ``what``. Any other status is the caller's to read."""
        try:
            response = self._connected().request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(f"{where} timed out {what}") from exc
        except httpx.HTTPError as exc:
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
        if self._client is not None:
            self._client.close()
            self._client = None


def _answer(response: httpx.Response) -> Answer:
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    body: Json = {}
    if not response.content:
        kind = "no body"
    else:
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            body, kind = parsed, "json"
    return Answer(response.status_code, body, kind, response.headers)


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
