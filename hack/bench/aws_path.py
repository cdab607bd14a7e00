"""Benchmark: the agent's ``--once`` on the aws path, time to files and peak RSS.

Starts a moto server on loopback (IAM enforced, tests/motoserver.py), seeds N
Secrets Manager secrets and a role a projected-token-shaped JWT may assume,
then runs ``latchkey-sidecar --once`` in a fresh process per run: STS web
identity login, N reads, N files. Wall time from spawn to exit (all files
written) and peak RSS (``wait4``'s ``ru_maxrss``, taken by agent.py's small
spawner so this process's own peak does not leak in), medians over the runs
after one dropped warm-up. ``hack/bench/agent.py`` prints it beside the Vault path.

    python hack/bench/aws_path.py [--secrets 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.bench.agent import install, measure
from hack.localstore import Issuer
from tests.motoserver import MotoServer

AUDIENCE = "sts.amazonaws.com"
READ = ["secretsmanager:GetSecretValue"]


def _seed(server: MotoServer, issuer: Issuer, count: int) -> str:
    """``count`` JSON secrets at bench/sN and the role that may read them; its ARN."""
    provider = server.add_oidc_provider(issuer.issuer, audience=AUDIENCE)
    role = server.add_role("bench", provider_arn=provider, actions=READ)
    secrets = server.client("secretsmanager")
    for i in range(count):
        value = json.dumps({"username": f"user-{i}", "password": f"pw-{i:04d}"})
        secrets.create_secret(Name=f"bench/s{i}", SecretString=value)
    return role


def _config(server: MotoServer, role: str, token: Path, out: Path, count: int) -> dict[str, Any]:
    return {
        "store": {"kind": "aws", "region": "us-east-1", "endpointUrl": server.endpoint},
        "role": role,
        "tokenPath": str(token),
        "secretsDir": str(out),
        "stateDir": str(out.parent / "state"),
        "files": [{"name": f"s{i}", "path": f"secretsmanager:bench/s{i}"} for i in range(count)],
    }


def bench_aws(n_secrets: int = 10, runs: int = 5) -> dict[str, float]:
    """Median time to files (ms) and peak RSS (MiB) of ``--once`` reading ``n_secrets``."""
    with tempfile.TemporaryDirectory(prefix="latchkey-bench-aws-") as tmp:
        workdir = Path(tmp)
        server = MotoServer(workdir)
        server.start()
        try:
            issuer = Issuer()
            role = _seed(server, issuer, n_secrets)
            token = workdir / "token"
            token.write_text(
                issuer.mint(namespace="bench", service_account="app", audience=AUDIENCE)
            )
            out = workdir / "out"
            config = _config(server, role, token, out, n_secrets)
            env = {**os.environ, "LATCHKEY_CONFIG": json.dumps(config)}
            # The same regular (non-editable) install the Vault path runs, as the image does.
            argv = [str(install(workdir)), "--once"]
            samples = [measure(argv, env=env, out=out, expect=n_secrets) for _ in range(runs + 1)]
        finally:
            server.stop()
    kept = samples[1:]  # the first run warms caches and is dropped
    return {
        "secrets": n_secrets,
        "runs": runs,
        "aws_ms": statistics.median(s[0] for s in kept) * 1000,
        "aws_mib": statistics.median(s[1] for s in kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    row = bench_aws(args.secrets, args.runs)
    print(f"median of {args.runs} runs, {os.cpu_count()} CPUs")
    print("| path | secrets | ms | MiB |\n|---|---:|---:|---:|")
    print(f"| aws (moto) | {row['secrets']:.0f} | {row['aws_ms']:.0f} | {row['aws_mib']:.1f} |")


if __name__ == "__main__":
    main()
