"""Burst benchmark: a large Deployment scale-up hitting one webhook process, then two.

    python hack/bench/burst.py [--requests 5000] [--clients 64] [--warmup 1000]

A scale-up sends the API server's reviews of many new pods at once: the same
pod template, each pod with its own request uid and service-account token
volume (``kube-api-access-xxxxx``), from two ReplicaSets as in a rollout. This
sends ``--requests`` such reviews from ``--clients`` concurrent clients, each
one kept-alive HTTPS connection, to the real ``latchkey-webhook serve`` on
loopback: first to one process, then to two processes with the same
certificate on two ports, the clients split between them (uvicorn has no
SO_REUSEPORT; a Service spreads connections over replicas much the same way).

Every answer must be a 200 AdmissionReview for its own uid with a patch; a
request slower than the MutatingWebhookConfiguration's ``timeoutSeconds`` is an
error, as it would be for the API server. Each process's resident memory (VmRSS)
is read after a warm-up and again after the burst. The whole run is bounded by
``--deadline`` seconds and stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.bench.common import REPO, REVIEW, Target, rss_kib, running, serving_tls, webhook_argv
from hack.localstore import free_port

WEBHOOK_CONFIGURATION = REPO / "manifests/base/mutatingwebhookconfiguration.yaml"
TEMPLATE_HASHES = ("7c9d8f6b5d", "5b8c9d7f6e")  # two ReplicaSets of one Deployment
MAX_RSS_GROWTH = 0.10


def api_timeout() -> float:
    """The API server's wait for the webhook, as the manifests configure it."""
    document = yaml.safe_load(WEBHOOK_CONFIGURATION.read_text(encoding="utf-8"))
    return float(document["webhooks"][0]["timeoutSeconds"])


def scale_up(count: int) -> list[tuple[str, bytes]]:
    """``count`` reviews of one Deployment's new pods, each with its uid."""
    template = REVIEW.read_text(encoding="utf-8")
    request = json.loads(template)["request"]
    volume = next(
        v["name"] for v in request["object"]["spec"]["volumes"] if "kube-api-access" in v["name"]
    )
    reviews = []
    for index in range(count):
        uid = str(uuid.uuid4())
        template_hash = TEMPLATE_HASHES[index % len(TEMPLATE_HASHES)]
        text = template.replace(request["uid"], uid)
        text = text.replace(volume, f"kube-api-access-{uuid.uuid4().hex[:5]}")
        reviews.append((uid, text.replace(TEMPLATE_HASHES[0], template_hash).encode()))
    return reviews


@dataclass
class Burst:
    """What one setup's clients saw."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def quantile(self, q: float) -> float:
        cuts = statistics.quantiles(self.latencies, n=1000, method="inclusive")
        return cuts[round(q * 1000) - 1]


def _problem(uid: str, response: httpx.Response) -> str | None:
    """Why an answer is wrong for ``uid``, or None when it is the injection expected."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    answer: dict[str, Any] = response.json()["response"]
    if answer["uid"] != uid:
        return "another request's uid"
    if not answer["allowed"] or "patch" not in answer:
        return "no injection"
    return None


async def _client(client: httpx.AsyncClient, work: list[tuple[str, bytes]], result: Burst) -> None:
    headers = {"content-type": "application/json"}
    while work:
        uid, body = work.pop()
        started = time.perf_counter()
        try:
            response = await client.post("/mutate", content=body, headers=headers)
            problem = _problem(uid, response)
        except httpx.HTTPError as exc:
            problem = type(exc).__name__
        result.latencies.append(time.perf_counter() - started)
        if problem:
            result.errors[problem] += 1


async def burst(clients: list[httpx.AsyncClient], reviews: list[tuple[str, bytes]]) -> Burst:
    """Send every review, each client taking the next one as soon as it is free."""
    result, work = Burst(), list(reviews)
    started = time.perf_counter()
    await asyncio.gather(*(_client(client, work, result) for client in clients))
    result.seconds = time.perf_counter() - started
    return result


@dataclass(frozen=True)
class Setup:
    """One run's figures: the burst and each server's RSS before and after it."""

    name: str
    burst: Burst
    rss: list[tuple[int, int]]


async def measure(name: str, servers: list[Target], args: argparse.Namespace) -> Setup:
    """Warm up on the same connections, read RSS, burst, read RSS again."""
    timeout = httpx.Timeout(api_timeout())
    trust = args.tls.trust
    clients = [
        httpx.AsyncClient(base_url=servers[i % len(servers)][0], verify=trust, timeout=timeout)
        for i in range(args.clients)
    ]
    try:
        warm = await burst(clients, scale_up(args.warmup))
        if warm.errors:
            raise SystemExit(f"{name}: errors while warming up: {dict(warm.errors)}")
        before = [rss_kib(pid) for _, pid in servers]
        result = await burst(clients, scale_up(args.requests))
        after = [rss_kib(pid) for _, pid in servers]
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return Setup(name, result, list(zip(before, after, strict=True)))


def report(setups: list[Setup], limit: float) -> bool:
    """Print the table; whether every target was met."""
    print(f"{'setup':<14} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'p99 of ' + format(limit, 'g') + ' s':>10} {'req/s':>6}")  # fmt: skip
    met = True
    for setup in setups:
        b = setup.burst
        p50, p99, top = b.quantile(0.5), b.quantile(0.99), max(b.latencies)
        print(f"{setup.name:<14} {len(b.latencies):>8} {sum(b.errors.values()):>6} "
              f"{p50 * 1e3:>7.1f} {p99 * 1e3:>7.1f} {top * 1e3:>7.1f} "
              f"{p99 / limit:>10.1%} {len(b.latencies) / b.seconds:>6.0f}")  # fmt: skip
        met &= not b.errors and p99 < limit / 10
    print(f"\n{'process RSS':<26} {'before KiB':>10} {'after KiB':>10} {'change':>7}")
    for setup in setups:
        for index, (before, after) in enumerate(setup.rss):
            change = (after - before) / before
            met &= abs(change) <= MAX_RSS_GROWTH
            label = f"{setup.name} #{index + 1}"
            print(f"{label:<26} {before:>10} {after:>10} {change:>+7.1%}")
    for setup in setups:
        for problem, count in setup.burst.errors.items():
            print(f"{setup.name}: {count} x {problem}")
    return met


async def run(args: argparse.Namespace) -> list[Setup]:
    setups = []
    for name, processes in (("one process", 1), ("two processes", 2)):
        with ExitStack() as stack:
            ports = [free_port() for _ in range(processes)]
            servers = [
                stack.enter_context(
                    running(webhook_argv(port, args.tls), port, args.tmp / f"webhook-{port}.log")
                )
                for port in ports
            ]
            setups.append(await measure(name, servers, args))
    return setups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds for the whole run")
    args = parser.parse_args()
    args.tmp = Path(tempfile.mkdtemp(prefix="latchkey-burst-"))
    args.tls = serving_tls(args.tmp)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{os.cpu_count()} cores, load average before {load}, Python {sys.version.split()[0]}")
    print(f"{args.requests} reviews after {args.warmup} to warm up, {args.clients} clients\n")
    setups = asyncio.run(asyncio.wait_for(run(args), args.deadline))
    limit = api_timeout()
    met = report(setups, limit)
    print(f"\ntargets (no errors, p99 under {limit / 10:g} s, RSS within "
          f"{MAX_RSS_GROWTH:.0%}): {'met' if met else 'MISSED'}")  # fmt: skip
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
