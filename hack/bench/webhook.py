"""Benchmark: the real webhook beside a bare uvicorn app, same TLS, same run.

    python hack/bench/webhook.py [--requests 5000] [--concurrency 1 16] [--rounds 5]

Starts ``latchkey-webhook serve`` and a bare ASGI app (no framework: it reads
the body, parses the JSON and answers a fixed AdmissionReview) as separate
processes, one uvicorn worker each, both over HTTPS on loopback with the same
certificate. A lean keep-alive client in its own process (``loadgen.py``) sends a
typical annotated pod (a Deployment's, from ``tests/fixtures/reviews``) at each
concurrency, two ways:

- ``replicas``: the pods of one scale-up, as the API server sends them: each review
  with its own uid and its own service-account token volume name;
- ``distinct``: every pod from another template as well (its pod-template-hash
  differs), so no answer worked out for one pod serves another.

The table shows p50/p99 latency, requests/s and each server's CPU time per request
(from /proc: steady even when the machine is busy), the client's beside it, then
the ratios to the bare app. The question it answers: what does the webhook's own
work cost over the floor of uvicorn + TLS + JSON? The targets (issue 13) are for
``replicas``; ``distinct`` is the cost of a pod never seen before.

With ``--bare`` this file is the bare server itself.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.bench.common import (
    REVIEW,
    Target,
    cpu_seconds,
    rss_kib,
    running,
    serving_tls,
    webhook_argv,
)
from hack.localstore import free_port

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


# --- the bare server ---------------------------------------------------------------


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body, parse it, answer a fixed review: the floor the webhook is held to."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    uid = json.loads(body)["request"]["uid"]
    answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
    answer["response"] = {"uid": uid, "allowed": True}  # type: ignore[assignment]
    payload = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def serve_bare(port: int, cert: Path, key: Path) -> None:
    import uvicorn

    uvicorn.run(
        bare_app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=cert,
        ssl_keyfile=key,
        log_level="warning",
        access_log=False,
        server_header=False,
    )


# --- the load -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    server: str
    concurrency: int
    latencies: list[float]
    seconds: float
    server_cpu: float  # the server process's CPU seconds over the run
    client_cpu: float  # the load generator's, to show it was not the bottleneck

    @property
    def cpu_us(self) -> float:
        """Server CPU per request: the cost, whoever saturates first."""
        return self.server_cpu / len(self.latencies) * 1e6

    @property
    def client_cpu_us(self) -> float:
        return self.client_cpu / len(self.latencies) * 1e6

    def quantile(self, q: float) -> float:
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[int(q * 100) - 1]

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds


def joined(rounds: list[Result]) -> Result:
    """One server's rounds as one result: every latency, all the time and CPU."""
    first = rounds[0]
    return Result(
        first.server, first.concurrency,
        [latency for r in rounds for latency in r.latencies],
        sum(r.seconds for r in rounds), sum(r.server_cpu for r in rounds),
        sum(r.client_cpu for r in rounds),
    )  # fmt: skip


LOADGEN = Path(__file__).with_name("loadgen.py")
_sent = [0]  # requests numbered so far, over every run of the load generator


def _numbered(requests: int) -> int:
    """The first number for a run: a distinct pod is never one an earlier run sent."""
    first = _sent[0]
    _sent[0] += requests
    return first


def varied(distinct: bool) -> list[str]:
    """The review's texts that differ per request: uid and token volume, and for
    ``distinct`` pods the pod-template-hash (in the labels, generateName and owner)."""
    request = json.loads(REVIEW.read_text(encoding="utf-8"))["request"]
    pod = request["object"]
    [volume] = [v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-")]
    texts = [request["uid"], volume]
    return [*texts, pod["metadata"]["labels"]["pod-template-hash"]] if distinct else texts


def load(
    url: str, ca_file: Path, *, concurrency: int, requests: int, vary: list[str]
) -> dict[str, Any]:
    """Run the load generator in its own process; its latencies, wall time and CPU."""
    argv = [sys.executable, str(LOADGEN), f"{url}/mutate", str(REVIEW), "--ca", str(ca_file)]
    argv += ["--concurrency", str(concurrency), "--requests", str(requests)]
    argv += [f"--vary={text}" for text in vary]
    argv += ["--first", str(_numbered(requests))]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(name: str, server: Target, ca_file: Path, *, concurrency: int, requests: int) -> Result:
    url, pid = server
    vary = varied(distinct=name == "distinct")
    warm_up = max(200, requests // 10)
    load(url, ca_file, concurrency=concurrency, requests=warm_up, vary=vary)
    cpu = cpu_seconds(pid)
    run = load(url, ca_file, concurrency=concurrency, requests=requests, vary=vary)
    return Result(
        name, concurrency, run["latencies"], run["seconds"], cpu_seconds(pid) - cpu,
        run["client_cpu"],
    )  # fmt: skip


def check_injects(url: str, ca: ssl.SSLContext) -> None:
    """Benchmark the injection path, not a shortcut: the answer must carry a patch."""
    headers = {"content-type": "application/json"}
    response = httpx.post(f"{url}/mutate", content=REVIEW.read_bytes(), headers=headers, verify=ca)
    if "patch" not in response.json()["response"]:
        raise SystemExit(f"the webhook did not inject the typical pod: {response.text}")


LABELS = {"replicas": "webhook replicas", "distinct": "webhook distinct", "bare": "bare replicas"}


def report(results: list[Result]) -> None:
    columns = ("conc", "requests", "p50 ms", "p99 ms", "req/s", "server CPU us/req", "client")
    print(f"{'server, pods':<16}", *(f"{c:>{len(c)}}" for c in columns))
    for r in results:
        p50, p99 = r.quantile(0.5) * 1000, r.quantile(0.99) * 1000
        print(
            f"{LABELS[r.server]:<16} {r.concurrency:>4} {len(r.latencies):>8}"
            f" {p50:>6.2f} {p99:>6.2f} {r.rps:>5.0f} {r.cpu_us:>17.0f} {r.client_cpu_us:>6.0f}"
        )
    print("\nratios to bare:")
    by = {(r.server, r.concurrency): r for r in results}
    for name in ("replicas", "distinct"):
        for c in sorted({r.concurrency for r in results}):
            hook, bare = by[name, c], by["bare", c]
            p50 = hook.quantile(0.5) / bare.quantile(0.5)
            p99 = hook.quantile(0.99) / bare.quantile(0.99)
            rps, cpu = hook.rps / bare.rps, hook.cpu_us / bare.cpu_us
            print(
                f"  {name:<8} concurrency {c:>2}: p50 {p50:.2f}x p99 {p99:.2f}x"
                f" req/s {rps:.2f}x CPU {cpu:.2f}x"
            )
    top = max(r.concurrency for r in results)
    hook, bare = by["replicas", top], by["bare", top]
    targets = [
        ("server CPU per review <= 1.5x", hook.cpu_us / bare.cpu_us <= 1.5),
        (f"p99 at concurrency {top} <= 1.5x", hook.quantile(0.99) / bare.quantile(0.99) <= 1.5),
        (f"req/s at concurrency {top} >= 0.6x", hook.rps / bare.rps >= 0.6),
        ("client CPU below each server's", all(r.client_cpu < r.server_cpu for r in results)),
    ]
    print()
    for what, met in targets:
        print(f"target (replicas) {what}: {'met' if met else 'MISSED'}")


def bench(args: argparse.Namespace) -> None:
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())  # others' work skews latency
    tmp = Path(tempfile.mkdtemp(prefix="latchkey-bench-"))
    tls = serving_tls(tmp)
    trust = tls.trust
    hook_port, bare_port = free_port(), free_port()
    hook = webhook_argv(hook_port, tls)
    bare = [sys.executable, __file__, "--bare", "--port", str(bare_port), "--cert", str(tls.cert)]
    bare += ["--key", str(tls.key)]
    results: list[Result] = []
    with (
        running(hook, hook_port, tmp / "webhook.log") as webhook,
        running(bare, bare_port, tmp / "bare.log") as floor,
    ):
        check_injects(webhook[0], trust)
        started_kib = rss_kib(webhook[1])
        servers = (("replicas", webhook), ("distinct", webhook), ("bare", floor))
        for concurrency in args.concurrency:
            # Interleaved rounds: a slow spell of the machine lands on every server alike.
            rounds = [
                measure(
                    name, server, tls.ca_file,
                    concurrency=concurrency, requests=args.requests // args.rounds,
                )
                for _ in range(args.rounds)
                for name, server in servers
            ]  # fmt: skip
            results += [joined([r for r in rounds if r.server == name]) for name, _ in servers]
        grown = (rss_kib(webhook[1]) - started_kib) / 1024
    print(f"{os.cpu_count()} cores, load average before {load}, Python {sys.version.split()[0]}")
    print(f"{args.requests} requests per setting, in {args.rounds} interleaved rounds\n")
    report(results)
    print(f"\nwebhook RSS grew {grown:.1f} MiB over the run (kept answers included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare(args.port, args.cert, args.key)
    else:
        bench(args)


if __name__ == "__main__":
    main()
