"""Fuzzing the webhook in-process: hostile AdmissionReviews, and what every answer must be.

    python hack/fuzz_webhook.py [--cases 200000] [--seed N] [--family annotations ...]

The CI run (``tests/webhook/test_fuzz.py``) takes the same strategies
(:mod:`hack.fuzz_cases`) and the same :func:`check` at a size it can afford;
this script is the long run. It drives the real ASGI app through
``httpx.ASGITransport`` on one event loop, so a case costs the app's own work
and hypothesis's, not a socket's.

Every answer must be: no 5xx, JSON, no traceback or Python repr, messages of at
most :data:`webhook.review.MAX_MESSAGE` bytes; a 200 must be an AdmissionReview
with the request's uid, never an internal error, its patch must apply to the pod,
and a denial quotes values as JSON, not as a Python repr.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hack.fuzz_cases import FAMILIES, JSON, Case  # noqa: E402
from webhook.app import MAX_BODY, create_app  # noqa: E402
from webhook.review import MAX_MESSAGE  # noqa: E402
from webhook.settings import WebhookConfig, load_config  # noqa: E402

CONFIG = REPO / "tests/fixtures/config.yaml"
# What a traceback or a Python repr looks like; JSON never writes these by itself.
LEAKS = ("Traceback", 'File "', "<class '", " object at 0x", "{'", "['", "Error(")
# Share of the cases each family gets; annotation values are where users write most.
WEIGHTS = {"envelope": 0.25, "pod": 0.3, "annotations": 0.35, "raw": 0.1}
CHUNK = 10_000
SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}


class Driver:
    """The real app on one event loop; every case goes through :func:`check`."""

    def __init__(self, config: WebhookConfig) -> None:
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=create_app(config))
        self.client = httpx.AsyncClient(transport=transport, base_url="https://webhook.test")
        self.outcomes: Counter[str] = Counter()
        self.last: Answer | None = None

    def send(self, case: Case) -> str:
        """Post one case to /mutate; its outcome, after every check held."""
        body, content_type = case
        post = self.client.post("/mutate", content=body, headers={"content-type": content_type})
        response = self.loop.run_until_complete(post)
        self.last = Answer(response.status_code, response.headers["content-type"], response.text)
        outcome = check(body, self.last)
        self.outcomes[outcome] += 1
        return outcome

    @property
    def cases(self) -> int:
        return sum(self.outcomes.values())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


@dataclass(frozen=True)
class Answer:
    """What came back, whichever client sent the request."""

    status: int
    content_type: str
    text: str


def check(body: bytes, answer: Answer) -> str:
    """Raise AssertionError unless ``answer`` is a well-formed answer to ``body``; its outcome."""
    assert answer.status in (200, 400, 413, 415), f"HTTP {answer.status}: {answer.text[:300]}"
    assert answer.content_type == JSON
    sent = _sent_text(body)
    leaked = [marker for marker in LEAKS if marker in answer.text and marker not in sent]
    assert not leaked, f"{leaked} in the answer: {answer.text[:300]}"
    document = json.loads(answer.text)
    if answer.status != 200:
        assert list(document) == ["error"], document
        assert 0 < len(document["error"].encode()) <= MAX_MESSAGE
        return f"http-{answer.status}"
    request = json.loads(body)["request"]
    assert (document["apiVersion"], document["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    result = document["response"]
    assert result["uid"] == request["uid"], "answered with another uid"
    for warning in result.get("warnings", []):
        assert 0 < len(warning.encode()) <= MAX_MESSAGE
    if not result["allowed"]:
        return _check_denial(result["status"], request, sent)
    if "patch" not in result:
        return "allowed"
    assert result["patchType"] == "JSONPatch"
    jsonpatch.apply_patch(request["object"], json.loads(base64.b64decode(result["patch"])))
    return "injected"


def _check_denial(status: dict[str, Any], request: dict[str, Any], sent: str) -> str:
    """A denial of ours (never an internal error), bounded, quoting values as JSON."""
    message = status["message"]
    assert status["code"] == 403, f"internal error: {message}"
    assert 0 < len(message.encode("utf-8", "surrogatepass")) <= MAX_MESSAGE, len(message)
    annotations = request["object"]["metadata"]["annotations"]
    for value in annotations.values() if isinstance(annotations, dict) else ():
        # Long enough that our own wording ('..', 'x') cannot contain it by chance.
        quoted = repr(value)[:24] if isinstance(value, str) and len(value) >= 6 else ""
        assert not quoted or quoted not in message or quoted in sent, f"repr in: {message}"
    return "denied"


def _sent_text(body: bytes) -> str:
    """The request as text, raw and decoded: what an answer may quote back."""
    sent = body.decode("utf-8", "replace")
    try:
        return sent + json.dumps(json.loads(body), ensure_ascii=False)
    except (ValueError, RecursionError):
        return sent


def fuzz(driver: Driver, family: str, cases: int, *, seed: int | None = None) -> int:
    """Run ``cases`` generated cases of ``family`` through ``driver``; how many ran."""
    before = driver.cases

    @settings(max_examples=cases, **SETTINGS)
    @given(FAMILIES[family]())
    def one(case: Case) -> None:
        driver.send(case)

    (hypothesis_seed(seed)(one) if seed is not None else one)()
    return driver.cases - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--family", action="append", choices=list(WEIGHTS), help="only these")
    args = parser.parse_args()
    driver = Driver(load_config(CONFIG))
    started = time.perf_counter()
    print(f"body limit {MAX_BODY} bytes, message bound {MAX_MESSAGE} bytes")
    for family, share in WEIGHTS.items():
        if args.family and family not in args.family:
            continue
        began, ran, target = time.perf_counter(), 0, max(1, int(args.cases * share))
        while ran < target:  # in chunks: hypothesis keeps every example of a run in memory
            seed = None if args.seed is None else args.seed + ran
            ran += fuzz(driver, family, min(CHUNK, target - ran), seed=seed)
        print(f"{family:<12} {ran:>8} cases {time.perf_counter() - began:>7.1f} s", flush=True)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(driver.outcomes.items()))
    print(
        f"{'total':<12} {driver.cases:>8} cases {time.perf_counter() - started:>7.1f} s: {outcomes}"
    )
    driver.close()


if __name__ == "__main__":
    main()
