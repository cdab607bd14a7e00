"""The HTTP side of the webhook, through its real ASGI app: the two error channels,
the answers for good reviews, and the metrics they move."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from webhook import app as app_module
from webhook.app import create_app
from webhook.metrics import Metrics
from webhook.mutate import Mutation, mutate_pod
from webhook.settings import WebhookConfig

CONFIG = WebhookConfig.model_validate(
    {
        "stores": {
            "default": {
                "kind": "vault",
                "address": "https://openbao.openbao.svc:8200",
                "auth": {"method": "jwt", "audience": "openbao"},
            }
        }
    }
)
STATUS = "latchkey.dev/status"
OPTED_IN = {"latchkey.dev/inject": "true", "latchkey.dev/secret-db": "secret/data/web/db"}
JSON_HEADERS = {"content-type": "application/json"}


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod as the API server sends it for a Deployment: no name, no namespace yet."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-7d4b9c6f5-",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5"},
            "annotations": dict(annotations or {}),
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c6f5"}
            ],
        },
        "spec": {
            "serviceAccountName": "web",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example/web:1.4",
                    "command": ["/app/web"],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x7k2p",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        }
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]},
                }
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
        },
    }


def admission_review(
    obj: dict[str, Any] | None = None,
    *,
    uid: str = "b7a4c1de-0000-4000-8000-000000000001",
    operation: str = "CREATE",
    namespace: str = "shop",
    dry_run: bool = False,
    kind: str = "Pod",
    resource: str = "pods",
) -> dict[str, Any]:
    """An AdmissionReview v1 with the fields the API server really sends."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": resource},
            "requestKind": {"group": "", "version": "v1", "kind": kind},
            "requestResource": {"group": "", "version": "v1", "resource": resource},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj if obj is not None else pod(OPTED_IN),
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def answer_of(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    review = response.json()
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    result: dict[str, Any] = review["response"]
    return result


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    if "patch" not in answer:
        return []
    assert answer["patchType"] == "JSONPatch"
    ops: list[dict[str, Any]] = json.loads(base64.b64decode(answer["patch"]))
    return ops


def metric(client: Client, name: str, **labels: str) -> float:
    """One sample from /metrics, 0 when the series does not exist yet."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


class Ready:
    """A readiness source that says what it was told to."""

    def __init__(self, problem: str | None) -> None:
        self._problem = problem

    def problem(self) -> str | None:
        return self._problem


class Client:
    """The real ASGI app over httpx's ASGITransport, driven synchronously.

    The transport re-raises anything the app lets escape, so a route that would
    answer 500 fails the test instead of hiding behind a status code.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str) -> httpx.Response:
        return self.request("GET", url)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


@pytest.fixture
def client() -> Client:
    return Client(create_app(CONFIG, tls=Ready(None)))


def post(client: Client, review: dict[str, Any]) -> Any:
    return client.post("/mutate", content=json.dumps(review), headers=JSON_HEADERS)


def _without(path: tuple[str, ...]) -> bytes:
    review = admission_review()
    node = review
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return json.dumps(review).encode()


def _with(path: tuple[str, ...], value: Any) -> bytes:
    review = admission_review()
    node = review
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(review).encode()


def _streamed(body: bytes) -> Callable[[], AsyncIterator[bytes]]:
    """A body sent in chunks with no Content-Length: only the streamed size can refuse it."""

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    return chunks


HUGE = b'{"pad": "' + b"x" * (3 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        pytest.param(b"{not json", JSON_HEADERS, 400, "not JSON", id="malformed-json"),
        pytest.param(b"", JSON_HEADERS, 400, "empty body", id="empty-body"),
        pytest.param(b"[1, 2]", JSON_HEADERS, 400, "expected a JSON object", id="json-list"),
        pytest.param(b'"review"', JSON_HEADERS, 400, "expected a JSON object", id="json-string"),
        pytest.param(_without(("request",)), JSON_HEADERS, 400, "request", id="missing-request"),
        pytest.param(
            _without(("request", "uid")), JSON_HEADERS, 400, "request.uid", id="missing-uid"
        ),
        pytest.param(
            _with(("request", "uid"), ""), JSON_HEADERS, 400, "request.uid", id="empty-uid"
        ),
        pytest.param(
            _without(("request", "object")), JSON_HEADERS, 400, "request.object", id="no-object"
        ),
        pytest.param(
            _with(("request", "namespace"), ""), JSON_HEADERS, 400, "namespace", id="no-namespace"
        ),
        pytest.param(
            _with(("request", "object"), [1]), JSON_HEADERS, 400, "request.object", id="object-list"
        ),
        pytest.param(
            _with(("kind",), "Pod"), JSON_HEADERS, 400, "AdmissionReview", id="wrong-kind"
        ),
        pytest.param(
            _with(("apiVersion",), "admission.k8s.io/v1beta1"),
            JSON_HEADERS,
            400,
            "admission.k8s.io/v1",
            id="wrong-api-version",
        ),
        pytest.param(HUGE, JSON_HEADERS, 413, "limit", id="huge-body"),
        pytest.param(_streamed(HUGE), JSON_HEADERS, 413, "limit", id="huge-body-streamed"),
        pytest.param(
            json.dumps(admission_review()).encode(),
            {"content-type": "text/plain"},
            415,
            "application/json",
            id="wrong-content-type",
        ),
        pytest.param(
            json.dumps(admission_review()).encode(),
            {},
            415,
            "application/json",
            id="no-content-type",
        ),
    ],
)
def test_a_malformed_request_is_a_4xx_with_a_short_message(
    client: Client, body: Any, headers: dict[str, str], status: int, message: str
) -> None:
    content = body() if callable(body) else body
    response = client.post("/mutate", content=content, headers=headers)
    assert response.status_code == status
    problem = response.json()["error"]
    assert message in problem
    assert "Traceback" not in response.text
    assert len(problem) < 200
    assert metric(client, "latchkey_webhook_reviews_total", operation="", outcome="malformed") == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["apiVersion", "kind", "request", "uid", "object", "x"]),
                    inner,
                    max_size=4,
                )
            ),
            max_leaves=12,
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_no_body_gets_a_server_error(body: bytes) -> None:
    response = Client(create_app(CONFIG)).post("/mutate", content=body, headers=JSON_HEADERS)
    assert response.status_code in (200, 400)
    assert "Traceback" not in response.text


def test_an_opted_in_pod_gets_a_patch_that_applies(client: Client) -> None:
    review = admission_review()
    answer = answer_of(post(client, review))
    assert answer == {**answer, "uid": review["request"]["uid"], "allowed": True}
    patched = jsonpatch.apply_patch(review["request"]["object"], patch_of(answer))
    assert patched["metadata"]["annotations"][STATUS] == "injected"
    names = [c["name"] for c in patched["spec"].get("initContainers", [])]
    names += [c["name"] for c in patched["spec"]["containers"]]
    assert "latchkey-agent" in names
    assert metric(client, "latchkey_webhook_injections_total") == 1
    assert metric(client, "latchkey_webhook_reviews_total", operation="CREATE", outcome="injected")
    assert metric(client, "latchkey_webhook_review_duration_seconds_count") == 1
    second = admission_review(patched)
    assert patch_of(answer_of(post(client, second))) == []


@pytest.mark.parametrize(
    ("review", "outcome"),
    [
        pytest.param(admission_review(pod()), "not-requested", id="not-annotated"),
        pytest.param(
            admission_review(pod({"latchkey.dev/inject": "false"})), "not-requested", id="opted-out"
        ),
        pytest.param(
            admission_review(pod({**OPTED_IN, STATUS: "injected"})),
            "already-injected",
            id="already-injected",
        ),
        pytest.param(admission_review(operation="UPDATE"), "ignored", id="update"),
        pytest.param(admission_review(operation="DELETE"), "ignored", id="delete"),
        pytest.param(
            admission_review({"kind": "ConfigMap"}, kind="ConfigMap", resource="configmaps"),
            "ignored",
            id="not-a-pod",
        ),
    ],
)
def test_pods_not_for_us_are_allowed_with_no_patch(
    client: Client, review: dict[str, Any], outcome: str
) -> None:
    answer = answer_of(post(client, review))
    assert answer["allowed"] is True
    assert answer["uid"] == review["request"]["uid"]
    assert "patch" not in answer
    operation = review["request"]["operation"]
    assert metric(client, "latchkey_webhook_reviews_total", operation=operation, outcome=outcome)
    assert metric(client, "latchkey_webhook_injections_total") == 0


def test_a_dry_run_gets_the_same_answer_but_counts_no_injection(client: Client) -> None:
    real = answer_of(post(client, admission_review()))
    dry = answer_of(post(client, admission_review(dry_run=True)))
    assert dry == real
    assert metric(client, "latchkey_webhook_injections_total") == 1
    reason = {"reason": "dry-run"}
    assert metric(client, "latchkey_webhook_annotated_not_injected_total", **reason) == 1


@pytest.mark.parametrize(
    ("review", "named", "reason"),
    [
        pytest.param(
            admission_review(pod({**OPTED_IN, "latchkey.dev/refresh": "forever"})),
            "latchkey.dev/refresh",
            "latchkey.dev/refresh",
            id="bad-refresh",
        ),
        pytest.param(
            admission_review(pod({**OPTED_IN, "latchkey.dev/secret-DB": "secret/data/x"})),
            "latchkey.dev/secret-DB",
            "latchkey.dev/secret-*",
            id="bad-file-name",
        ),
        pytest.param(
            admission_review(pod({**OPTED_IN, "latchkey.dev/colour": "blue"})),
            "latchkey.dev/colour",
            "unknown-annotation",
            id="unknown-key",
        ),
        pytest.param(
            admission_review(namespace="kube-system"),
            "kube-system",
            "latchkey.dev/inject",
            id="kube-system",
        ),
    ],
)
def test_a_bad_pod_is_denied_naming_the_annotation(
    client: Client, review: dict[str, Any], named: str, reason: str
) -> None:
    answer = answer_of(post(client, review))
    assert answer["allowed"] is False
    assert answer["uid"] == review["request"]["uid"]
    assert answer["status"]["code"] == 403
    assert named in answer["status"]["message"]
    assert "patch" not in answer
    assert metric(client, "latchkey_webhook_denials_total", reason=reason) == 1
    assert metric(client, "latchkey_webhook_reviews_total", operation="CREATE", outcome="denied")


def _raises(*_args: Any, **_kwargs: Any) -> Mutation:
    raise RuntimeError("bug in a builder")


def _unencodable(*_args: Any, **_kwargs: Any) -> Mutation:
    return Mutation("injected", [{"op": "add", "path": "/x", "value": {1j}}], pod={})


@pytest.mark.parametrize(
    ("broken", "logged"),
    [
        pytest.param(_raises, "RuntimeError: bug in a builder", id="mutate-raises"),
        pytest.param(_unencodable, "TypeError", id="patch-does-not-encode"),
    ],
)
def test_an_unexpected_error_denies_naming_the_uid(
    client: Client,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    broken: Callable[..., Mutation],
    logged: str,
) -> None:
    monkeypatch.setattr(app_module, "mutate_pod", broken)
    review = admission_review(uid="5f1e0000-dead-4bee-8000-00000000beef")
    with caplog.at_level(logging.ERROR, logger="webhook.app"):
        response = post(client, review)
    answer = answer_of(response)
    assert answer["allowed"] is False
    assert answer["status"]["message"] == (
        "internal error handling request 5f1e0000-dead-4bee-8000-00000000beef; see the webhook logs"
    )
    assert "bug in a builder" not in response.text
    assert "Traceback" not in response.text
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.uid == review["request"]["uid"]  # type: ignore[attr-defined]
    assert logged in caplog.text
    assert "secret/data/web/db" not in caplog.text
    assert metric(client, "latchkey_webhook_denials_total", reason="internal-error") == 1


def test_replicas_of_one_pod_get_one_answer_each_under_their_own_uid(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A scale-up's pods are one question: worked out once, every review still answered,
    counted and logged under its own uid."""
    calls: list[str] = []

    def counted(pod: dict[str, Any], **kwargs: Any) -> Mutation:
        calls.append(kwargs["namespace"])
        return mutate_pod(pod, **kwargs)

    monkeypatch.setattr(app_module, "mutate_pod", counted)
    uids = [f"b7a4c1de-0000-4000-8000-00000000000{n}" for n in range(3)]
    with caplog.at_level(logging.INFO, logger="webhook.app"):
        answers = [answer_of(post(client, admission_review(uid=uid))) for uid in uids]
    assert calls == ["shop"]
    assert [a["uid"] for a in answers] == uids
    assert [{**a, "uid": ""} for a in answers] == [{**answers[0], "uid": ""}] * 3
    assert [r.uid for r in caplog.records if r.msg == "review"] == uids  # type: ignore[attr-defined]
    assert metric(client, "latchkey_webhook_replica_answers_total") == 2
    assert metric(client, "latchkey_webhook_injections_total") == 3
    assert metric(client, "latchkey_webhook_reviews_total", operation="CREATE", outcome="injected")


@pytest.mark.parametrize(
    ("other", "mount_path"),
    [
        pytest.param(admission_review(namespace="bank"), "/latchkey/secrets", id="namespace"),
        pytest.param(
            admission_review(pod({**OPTED_IN, "latchkey.dev/mount-path": "/etc/db"})),
            "/etc/db",
            id="annotation",
        ),
    ],
)
def test_a_pod_that_differs_is_worked_out_afresh(
    client: Client, other: dict[str, Any], mount_path: str
) -> None:
    post(client, admission_review())
    patched = jsonpatch.apply_patch(
        other["request"]["object"], patch_of(answer_of(post(client, other)))
    )
    [web] = [c for c in patched["spec"]["containers"] if c["name"] == "web"]
    assert mount_path in [m["mountPath"] for m in web["volumeMounts"]]
    assert metric(client, "latchkey_webhook_replica_answers_total") == 0


def test_a_denied_pod_asked_again_is_denied_again(client: Client) -> None:
    review = admission_review(pod({**OPTED_IN, "latchkey.dev/refresh": "forever"}))
    for _ in range(2):
        answer = answer_of(post(client, review))
        assert answer["allowed"] is False
        assert "latchkey.dev/refresh" in answer["status"]["message"]
    assert metric(client, "latchkey_webhook_denials_total", reason="latchkey.dev/refresh") == 2
    assert metric(client, "latchkey_webhook_replica_answers_total") == 0


def test_the_pod_sent_is_not_changed_by_the_review(client: Client) -> None:
    review = admission_review()
    before = copy.deepcopy(review)
    post(client, review)
    assert review == before


@pytest.mark.parametrize(
    ("problem", "status"),
    [pytest.param(None, 200, id="ready"), pytest.param("certificate expired", 503, id="expired")],
)
def test_readyz_reports_the_serving_certificate(problem: str | None, status: int) -> None:
    client = Client(create_app(CONFIG, tls=Ready(problem)))
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == status
    assert response.json().get("problem") == problem


def test_readyz_without_a_certificate_is_not_ready() -> None:
    response = Client(create_app(CONFIG)).get("/readyz")
    assert response.status_code == 503
    assert "certificate" in response.json()["problem"]


def test_each_app_has_its_own_metrics() -> None:
    one, two = Client(create_app(CONFIG)), Client(create_app(CONFIG, metrics=Metrics()))
    post(one, admission_review())
    assert metric(one, "latchkey_webhook_injections_total") == 1
    assert metric(two, "latchkey_webhook_injections_total") == 0
    assert two.get("/metrics").headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/mutate", "/validate"])
def test_a_review_route_refuses_other_methods_as_fastapi_does(method: str, path: str) -> None:
    response = Client(create_app(CONFIG)).request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"detail": "Method Not Allowed"}


def test_an_error_escaping_a_review_route_is_a_500_and_reaches_the_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(body: bytes) -> Any:
        raise RuntimeError("bug in the envelope")

    monkeypatch.setattr(app_module, "parse_review", broken)

    async def send(raise_app_exceptions: bool) -> httpx.Response:
        transport = httpx.ASGITransport(
            app=create_app(CONFIG), raise_app_exceptions=raise_app_exceptions
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as c:
            body = json.dumps(admission_review())
            return await c.post("/mutate", content=body, headers=JSON_HEADERS)

    response = asyncio.run(send(raise_app_exceptions=False))
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    assert "bug in the envelope" not in response.text
    with pytest.raises(RuntimeError, match="bug in the envelope"):
        asyncio.run(send(raise_app_exceptions=True))
