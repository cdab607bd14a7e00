"""The cloud stores' HTTP boundary: what an answer becomes before a store reads it.

A fault table over a function that answers instead of the network: redirects are
never followed (the bearer token would go along), busy and failing services are
retryable with their ``Retry-After``, and error texts are the services' own, never
a body that is not their JSON.
"""

from __future__ import annotations

import json

import pytest

from sidecar.errors import StoreUnavailable
from sidecar.stores import cloud_http, https
from tests.sidecar.agent_helpers import reply

WHERE = "Google Secret Manager"


def answer(
    status: int, body: str = "", content_type: str = "application/json", **headers: str
) -> cloud_http.Answer:
    def handler(request: https.Request) -> https.Response:
        assert request.headers["authorization"] == "Bearer t"
        return reply(status, text=body, headers={"content-type": content_type, **headers})

    client = cloud_http.Https(None, timeout=5, send=handler)
    return client.call(
        "GET", "https://x/v1/s", what="reading s", where=WHERE,
        headers={"Authorization": "Bearer t"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "headers", "says", "retry_after"),
    [
        pytest.param(307, {"location": "https://elsewhere/"}, "a redirect is not followed", None,
                     id="redirect"),
        pytest.param(429, {"retry-after": "7"}, "answered 429 reading s", 7.0, id="busy"),
        pytest.param(503, {}, "answered 503 reading s", None, id="failing"),
    ],
)  # fmt: skip
def test_answers_that_are_retried(
    status: int, headers: dict[str, str], says: str, retry_after: float | None
) -> None:
    with pytest.raises(StoreUnavailable, match=says) as raised:
        answer(status, "{}", **headers)
    assert raised.value.retry_after == retry_after
    assert str(raised.value).startswith(WHERE)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        pytest.param(
            {"error": {"code": 403, "message": "Permission denied on s",
                       "status": "PERMISSION_DENIED"}},
            "application/json", "PERMISSION_DENIED: Permission denied on s", id="google",
        ),
        pytest.param(
            {"error": {"code": "Forbidden", "message": "no get permission"}},
            "application/json", "Forbidden: no get permission", id="key-vault",
        ),
        pytest.param(
            {"error": "invalid_grant", "error_description": "The audience does not match"},
            "application/json", "invalid_grant: The audience does not match", id="oauth",
        ),
        pytest.param(
            "<html><p>404. That's an error. pw-hunter2</p></html>", "text/html",
            "HTTP 404 with a text/html body, not the API's JSON error", id="html",
        ),
    ],
)  # fmt: skip
def test_error_text_is_the_services_own_never_a_foreign_body(
    body: object, content_type: str, reason: str
) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    got = answer(404 if content_type == "text/html" else 403, text, content_type)
    assert cloud_http.reason(got) == reason
    assert "hunter2" not in cloud_http.reason(got)


def test_an_unreachable_service_is_retryable_and_named() -> None:
    def refuse(request: https.Request) -> https.Response:
        raise ConnectionRefusedError(111, "Connection refused")

    client = cloud_http.Https(None, timeout=5, send=refuse)
    with pytest.raises(StoreUnavailable, match=f"^{WHERE} unreachable reading s"):
        client.call("GET", "https://x/v1/s", what="reading s", where=WHERE)
