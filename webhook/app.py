"""The webhook's HTTP routes: the one place errors become HTTP answers or denials.

Two error channels, as the API server expects. A request that is not a usable
AdmissionReview is the sender's bug: an HTTP 4xx with a short JSON message. A
pod that cannot be admitted as written is the pod author's problem: HTTP 200
with ``allowed: false`` and a message naming the annotation. An unexpected
error while handling a pod is a denial too (the pod must not start without its
secrets), naming the request uid so the traceback in the logs can be found.

The body is read raw, never through FastAPI's parameter validation: a 422 with
pydantic's error dump is not an answer the API server can use. Its schema is
documented for tools (:mod:`webhook.openapi`), not enforced from it.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from fastapi import FastAPI, Response
from fastapi.responses import PlainTextResponse
from starlette.routing import Route

from webhook.errors import BadRequest, Denied
from webhook.guard import check_update
from webhook.metrics import CONTENT_TYPE, Metrics, denial_reasons, operation
from webhook.mutate import mutate_pod
from webhook.openapi import document
from webhook.replicas import Replicas
from webhook.review import (
    AdmissionRequest,
    allowed,
    bounded,
    denied,
    dumps,
    errored,
    parse_review,
)
from webhook.settings import WebhookConfig

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # the API server's own request limit is 3 MiB
JSON = "application/json"
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Answer = Callable[[AdmissionRequest], dict[str, Any]]


class Readiness(Protocol):
    """Something that can say why the server should not take traffic yet."""

    def problem(self) -> str | None: ...


class HttpError(BadRequest):
    """A malformed request whose answer is a 4xx other than 400."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(document), status_code=status, media_type=JSON)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body, refused early when it says or turns out to be over ``limit``."""
    media_type = _header(scope, b"content-type").split(";")[0].strip().lower()
    if media_type != JSON:
        raise HttpError(415, f"content type {media_type or 'missing'}: expected {JSON}")
    declared = _header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"body of {declared} bytes is over the {limit}-byte limit")
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise BadRequest("the client went away before sending the whole body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise HttpError(413, f"body is over the {limit}-byte limit")
        if not message.get("more_body"):
            return bytes(body)


class ReviewRoute:
    """The raw ASGI endpoint of one AdmissionReview route (``/mutate``, ``/validate``).

    These routes are the webhook's hot path. They stay in FastAPI's router (so a
    request :class:`WebhookApp` does not take them for still reaches them, and
    :mod:`webhook.openapi` documents them), but they read the body and write the
    answer themselves: FastAPI's Request and Response objects and its dependency
    solving cost more CPU than the review they would wrap.
    """

    def __init__(self, answer: Answer, metrics: Metrics, max_body: int) -> None:
        self.answer = answer
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status, document = 200, {}
        try:
            review = parse_review(await _read_body(scope, receive, self.max_body))
            document = self.answer(review.request)
        except BadRequest as exc:
            problem = bounded(str(exc))
            self.metrics.reviews.labels("", "malformed").inc()
            log.info("malformed review", extra={"problem": problem})
            status, document = getattr(exc, "status", 400), {"error": problem}
        finally:
            self.metrics.latency.observe(time.perf_counter() - started)
        payload = dumps(document)
        headers = [(b"content-type", JSON.encode()), (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class WebhookApp(FastAPI):
    """FastAPI, with the review routes served ahead of its middleware stack.

    Starlette's and FastAPI's layers (error, exception, body-limit, telemetry and
    exit-stack middleware, then the router) each wrap every call and every ``send``:
    on ``/mutate`` they cost about as much CPU as parsing the review. A ``POST`` to a
    review route goes straight to its :class:`ReviewRoute`; everything else (another
    method on those paths included, which gets FastAPI's 405) takes the full stack.
    An error escaping the route still gets the 500 Starlette would send, and is
    raised on to the server, which logs it.
    """

    review_routes: dict[str, ReviewRoute]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self.review_routes.get(scope["path"])
        if route is None:
            await super().__call__(scope, receive, send)
            return
        started = False

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await route(scope, receive, sending)
        except Exception:
            if not started:
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise


class Reviewer:
    """Turns one admission request into its answer, counting what happened."""

    def __init__(self, config: WebhookConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.replicas = Replicas(on_hit=metrics.replica_answers.inc)

    def answer(self, request: AdmissionRequest) -> dict[str, Any]:
        """The response for one request; a bug of ours refuses the pod, naming the uid."""
        if not request.is_pod_create:
            self._count(request, "ignored")
            return allowed(request.uid)
        try:
            return self._review_pod(request)
        except Exception:
            log.exception("internal error handling request", extra={"uid": request.uid})
            self.metrics.denials.labels("internal-error").inc()
            self._count(request, "error")
            return errored(request.uid)

    def _review_pod(self, request: AdmissionRequest) -> dict[str, Any]:
        pod = request.object
        assert pod is not None  # parse_review refuses a Pod CREATE without one
        try:
            mutate = functools.partial(
                mutate_pod, pod, namespace=request.namespace, config=self.config
            )
            known = self.replicas.answer(pod, request.namespace, mutate)
        except Denied as exc:
            reasons = denial_reasons(exc)
            for reason in reasons:
                self.metrics.denials.labels(reason).inc()
            self._count(request, "denied", reason=",".join(reasons))
            return denied(request.uid, str(exc))
        answer = allowed(request.uid, known.patch, known.warnings)
        outcome: str = known.outcome
        if outcome == "already-injected":
            self.metrics.not_injected.labels("already-injected").inc()
        elif outcome == "injected" and request.dry_run:
            self.metrics.not_injected.labels("dry-run").inc()
            outcome = "dry-run"
        elif outcome == "injected":
            self.metrics.injections.inc()
        self._count(request, outcome)
        return answer

    def guard(self, request: AdmissionRequest) -> dict[str, Any]:
        """The answer to an update of an injected pod (webhook.guard); a bug refuses it."""
        if not request.is_pod_update or request.object is None or request.old_object is None:
            self._count(request, "ignored")
            return allowed(request.uid)
        try:
            refusals = check_update(
                request.object, request.old_object,
                sub_resource=request.sub_resource, settings=self.config.guard,
            )  # fmt: skip
        except Exception:
            log.exception("internal error guarding update", extra={"uid": request.uid})
            self.metrics.denials.labels("internal-error").inc()
            self._count(request, "error")
            return errored(request.uid)
        if not refusals:
            self._count(request, "guard-allowed")
            return allowed(request.uid)
        rules = sorted({refusal.rule for refusal in refusals})
        for rule in rules:
            self.metrics.guard_denials.labels(rule).inc()
        self._count(request, "guard-denied", reason=",".join(rules))
        return denied(request.uid, "latchkey: " + "; ".join(r.message for r in refusals))

    def _count(self, request: AdmissionRequest, outcome: str, *, reason: str = "") -> None:
        """One metric and one log line per review; never the pod's contents."""
        self.metrics.reviews.labels(operation(request.operation), outcome).inc()
        fields = {"uid": request.uid, "namespace": request.namespace, "outcome": outcome}
        log.info("review", extra={**fields, "operation": request.operation, "reason": reason})


def create_app(
    config: WebhookConfig,
    *,
    tls: Readiness | None = None,
    metrics: Metrics | None = None,
    max_body: int = MAX_BODY,
) -> FastAPI:
    """The ASGI app; ``tls`` reports on the serving certificate for ``/readyz``."""
    app = WebhookApp(title="latchkey-webhook", docs_url=None, redoc_url=None, openapi_url=None)
    reviewer = Reviewer(config, metrics or Metrics())
    app.state.metrics = reviewer.metrics

    app.review_routes = {}
    for path, answer in (("/mutate", reviewer.answer), ("/validate", reviewer.guard)):
        endpoint = ReviewRoute(answer, reviewer.metrics, max_body)
        app.review_routes[path] = endpoint
        app.router.routes.append(Route(path, endpoint, methods=["POST"]))
    app.openapi = functools.partial(document, app)  # type: ignore[method-assign]

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        problem = tls.problem() if tls is not None else "no serving certificate"
        if problem:
            return _json({"status": "not ready", "problem": problem}, 503)
        return _json({"status": "ok"})

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(reviewer.metrics.render(), media_type=CONTENT_TYPE)

    return app
