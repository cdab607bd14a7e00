"""Hostile input at the webhook's door: schemathesis over its OpenAPI schema, hypothesis over
AdmissionReviews and annotation values, and the extremes as a table.

Every answer goes through :func:`hack.fuzz_webhook.check`: no 5xx, no traceback or
Python repr, messages of at most 4 KiB, and a 200 that is an AdmissionReview for the
request's uid whose patch applies. The CI size is at least 10,000 cases (the count
is printed when the module ends); ``hack/fuzz_webhook.py --cases 200000`` is the
long run.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from hack.fuzz_cases import JSON, Case
from hack.fuzz_webhook import CONFIG, SETTINGS, Answer, Driver, check, fuzz
from webhook.app import MAX_BODY, create_app
from webhook.review import MAX_MESSAGE
from webhook.settings import load_config

REVIEW = Path(__file__).parents[1] / "fixtures" / "reviews" / "deployment-native.json"
# Cases per generated family: 10,000 in all with schemathesis's and the table's.
CASES = {"envelope": 1_900, "pod": 2_200, "annotations": 2_800, "raw": 2_950}
SCHEMATHESIS_CASES = 75  # per generation mode; its schema-driven generation costs ~40 ms a case
MINIMUM = 10_000
SCHEMA_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
K = "latchkey.dev/"


@pytest.fixture(scope="module")
def tally() -> Counter[str]:
    """Cases run by anything but the driver (schemathesis, the table), by source."""
    return Counter()


@pytest.fixture(scope="module")
def driver(request: pytest.FixtureRequest, tally: Counter[str]) -> Iterator[Driver]:
    """The real app in-process; prints how many cases ran when the module is done."""
    running = Driver(load_config(CONFIG))
    yield running
    running.close()
    total = running.cases + sum(tally.values())
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted((running.outcomes + tally).items()))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nwebhook fuzz: {total} cases ({outcomes})")


def review(pod_changes: dict[str, Any] | None = None, **request: Any) -> dict[str, Any]:
    """The Deployment review fixture with ``request`` fields and pod ``spec`` fields replaced."""
    document: dict[str, Any] = json.loads(REVIEW.read_text(encoding="utf-8"))
    document["request"].update(request)
    document["request"]["object"]["spec"].update(pod_changes or {})
    return document


def annotated(annotations: dict[str, Any]) -> dict[str, Any]:
    document = review()
    document["request"]["object"]["metadata"]["annotations"].update(annotations)
    return document


def body(document: object, *, raw_unicode: bool = False) -> bytes:
    return json.dumps(document, ensure_ascii=not raw_unicode).encode()


@pytest.mark.parametrize("family", [pytest.param(name, id=name) for name in CASES])
def test_generated_requests_get_well_formed_answers(driver: Driver, family: str) -> None:
    assert fuzz(driver, family, CASES[family]) == CASES[family]


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(GenerationMode.POSITIVE, id="positive"),
        pytest.param(GenerationMode.NEGATIVE, id="negative"),
    ],
)
def test_schemathesis_over_the_openapi_schema(
    driver: Driver, tally: Counter[str], mode: GenerationMode
) -> None:
    """Reviews generated from the schema, and broken against it. Negative ones need not be
    refused: the envelope ignores what it does not read, as the API server sends more."""
    app = create_app(load_config(CONFIG))
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    checks = [*SCHEMA_CHECKS, *([positive_data_acceptance] if mode.is_positive else [])]

    @settings(max_examples=SCHEMATHESIS_CASES, **SETTINGS)
    @given(schema["/mutate"]["POST"].as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=checks)
        sent = response.request.body or b""
        answer = Answer(response.status_code, response.headers["content-type"][0], response.text)
        tally[f"schemathesis {check(sent, answer)}"] += 1

    one()
    assert sum(n for k, n in tally.items() if k.startswith("schemathesis")) >= SCHEMATHESIS_CASES


MB = 1_000_000


def nested(levels: int) -> Any:
    """A value ``levels`` JSON levels deep."""
    value: Any = 1
    for _ in range(levels // 2):
        value = {"a": [value]}
    return value


EXTREMES = [
    pytest.param(body(annotated({K + "secret-db": "a" * MB})), 200, "injected", id="1mb-path"),
    pytest.param(body(annotated({K + "secret-db": "a " * MB})), 200, "denied", id="2mb-value"),
    pytest.param(
        body(annotated({K + "refresh": "é" * (MB // 2)}), raw_unicode=True),
        200, "denied", id="1mb-unicode",
    ),
    pytest.param(body(annotated({K + "x" * MB: "1"})), 200, "denied", id="1mb-key"),
    pytest.param(
        body(review({"containers": [{"name": f"c{i}", "args": ["x" * 400]} for i in range(2500)]})),
        200, "injected", id="1mb-of-containers",
    ),
    pytest.param(body(review(uid="u" * MB)), 200, "injected", id="1mb-uid"),
    pytest.param(b" " * (MAX_BODY + 1), 413, "http-413", id="over-the-body-limit"),
    pytest.param(body(review({"nested": nested(180)})), 200, "injected", id="nested-180-deep"),
    pytest.param(body(review({"nested": nested(400)})), 400, "http-400", id="nested-too-deep"),
    pytest.param(
        body(annotated({K + "secret-\x00": "\x00", K + "env-\x00": "a#\x00"})),
        200, "denied", id="null-bytes",
    ),
    # Go's encoder never writes a lone surrogate; the parser refuses one as not JSON.
    pytest.param(
        body(annotated({K + "secret-\ud800": "\udfff", K + "role": "\ud800"})),
        400, "http-400", id="lone-surrogates",
    ),
    pytest.param(body(review(uid="\ud800\x00")), 400, "http-400", id="surrogate-uid"),
    pytest.param(body(review(uid="\U0001f511\x00\u202e")), 200, "injected", id="odd-uid"),
    pytest.param(
        body(annotated({K + "refresh": "{'a': 1}" * 9000, K + "store": "[1]" * 9000})),
        200, "denied", id="repr-lookalikes",
    ),
    pytest.param(
        body(annotated({f"{K}secrte-{i}": "x" * 500 for i in range(400)})),
        200, "denied", id="four-hundred-typos",
    ),
    pytest.param(b'{"request": "\xff\xfe"}', 400, "http-400", id="invalid-utf8"),
    pytest.param(REVIEW.read_bytes().rstrip()[:-1], 400, "http-400", id="truncated"),
]  # fmt: skip


@pytest.mark.parametrize(("sent", "status", "outcome"), EXTREMES)
def test_extremes(driver: Driver, sent: bytes, status: int, outcome: str) -> None:
    assert driver.send((sent, JSON)) == outcome
    assert driver.last is not None
    assert driver.last.status == status


WRONG_TYPES = [
    pytest.param({"containers": 5}, "spec.containers: expected a list", id="containers-number"),
    pytest.param({"containers": [{}]}, "spec.containers[0].name: is required", id="no-name"),
    pytest.param(
        {"containers": [{"name": "app", "env": [[1]]}]},
        "spec.containers[0].env[0]: expected an object", id="env-entry-list",
    ),
    pytest.param(
        {"securityContext": {"runAsUser": "1000"}},
        "spec.securityContext.runAsUser: expected an integer", id="uid-string",
    ),
    pytest.param(
        {"securityContext": {"fsGroup": True}},
        "spec.securityContext.fsGroup: expected an integer", id="fsgroup-bool",
    ),
    pytest.param({"volumes": [{"name": 1}]}, "spec.volumes[0].name: expected a string", id="vol"),
    pytest.param(
        {"serviceAccountName": ["app"]}, "spec.serviceAccountName: expected a string", id="sa-list"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), WRONG_TYPES)
def test_wrong_pod_field_types_are_denied_by_path(
    driver: Driver, spec: dict[str, Any], expected: str
) -> None:
    assert driver.send((body(review(spec)), JSON)) == "denied"
    assert driver.last is not None
    assert json.loads(driver.last.text)["response"]["status"]["message"] == f"pod field {expected}"


def test_metric_labels_stay_bounded_whatever_the_operation() -> None:
    """Anyone in the cluster can reach the port; what they send must not grow /metrics."""
    driver = Driver(load_config(CONFIG))
    cases: list[Case] = [(body(review(operation=f"OP{i}" * 50)), JSON) for i in range(300)]
    for case in cases:
        assert driver.send(case) == "allowed"
    metrics = driver.loop.run_until_complete(driver.client.get("/metrics")).text
    driver.close()
    series = [line for line in metrics.splitlines() if line.startswith("latchkey_webhook_reviews_")]
    assert not any("OP1" in line for line in series)
    assert 'operation="other",outcome="ignored"} 300.0' in metrics
    assert len(metrics.encode()) < 16 * 1024


def test_message_bound_is_what_the_schema_says() -> None:
    app = create_app(load_config(CONFIG))
    answer = app.openapi()["paths"]["/mutate"]["post"]["responses"]["200"]
    schema = answer["content"]["application/json"]["schema"]["properties"]["response"]
    assert schema["properties"]["status"]["properties"]["message"]["maxLength"] == MAX_MESSAGE


def test_the_ci_run_has_at_least_ten_thousand_cases() -> None:
    """Each family test asserts its own count ran; together with the rest they make this."""
    cases = sum(CASES.values()) + 2 * SCHEMATHESIS_CASES + len(EXTREMES) + len(WRONG_TYPES)
    assert cases >= MINIMUM
