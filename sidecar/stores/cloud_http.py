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
from dataclasses import dataclass
from typing import Any

import httpx

from sidecar.errors import StoreUnavailable
from sidecar.stores.base import MAX_READERS
from sidecar.stores.vault_wire import ssl_context

Json = dict[str, Any]
REASON_LIMIT = 300


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: its status, its JSON object (empty when the body is not one),
    what to call it in a message when it is not JSON (``text/html``, ``no body``), and
    the server's clock (its ``Date`` header, epoch seconds) to measure lifetimes by."""

    status: int
    body: Json
    kind: str
    retry_after: float | None = None
    date: float | None = None

    @property
    def is_json(self) -> bool:
        return self.kind == "json"


def client(ca_bundle: str | None, *, timeout: float) -> httpx.Client:
    """One keep-alive client for every host of a store; hostnames always checked."""
    return httpx.Client(
        verify=ssl_context(ca_bundle),
        timeout=timeout,
        limits=httpx.Limits(max_connections=MAX_READERS, max_keepalive_connections=MAX_READERS),
        trust_env=False,
        follow_redirects=False,  # a redirect would carry the bearer token elsewhere
    )


def call(
    http: httpx.Client, method: str, url: str, *, what: str, where: str, **kwargs: Any
) -> Answer:
    """One request; transport failures, 429 and 5xx are StoreUnavailable, naming ``where``
    and ``what``. Any other status is the caller's to read from the :class:`Answer`."""
    try:
        response = http.request(method, url, **kwargs)
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
            f"{where} answered {what} with HTTP {answer.status} ({answer.kind}), not an answer: "
            "a redirect is not followed with the token"
        )
    return answer


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
    try:
        wait = max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        wait = None
    try:
        date = email.utils.parsedate_to_datetime(response.headers.get("date", "")).timestamp()
    except (TypeError, ValueError):
        date = None
    return Answer(response.status_code, body, kind, wait, date)


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
