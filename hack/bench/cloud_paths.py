"""Benchmark: the agent's ``--once`` on the cloud store paths, time to files and peak RSS.

For each kind a local stand-in on loopback: moto for ``aws`` (IAM enforced,
tests/motoserver.py), and the ``gcp`` and ``azure`` stand-ins (tests/gcpserver.py,
tests/azureserver.py: token exchange, IAM, HTTPS with a generated CA). Each is
seeded with N JSON secrets and a binding a projected-token-shaped JWT may use,
then ``latchkey-sidecar --once`` runs in a fresh process per run: the login, N
reads, N files. Wall time from spawn to exit (all files written) and peak RSS
(``wait4``'s ``ru_maxrss``, taken by agent.py's small spawner so this process's own
peak does not leak in), medians over the runs after one dropped warm-up.
``hack/bench/agent.py`` prints them beside the Vault path.

    python hack/bench/cloud_paths.py [--kinds aws,gcp,azure] [--secrets 10] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.bench.agent import install, measure
from hack.localstore import Issuer

KINDS = ("aws", "gcp", "azure")
NAMESPACE, SERVICE_ACCOUNT = "bench", "app"


@dataclass(frozen=True)
class Seeded:
    """A running stand-in with ``count`` secrets: the agent config's store part."""

    store: dict[str, Any]
    role: str
    audience: str
    paths: list[str]


def _value(i: int) -> str:
    return json.dumps({"username": f"user-{i}", "password": f"pw-{i:04d}"})


@contextmanager
def _aws(workdir: Path, issuer: Issuer, count: int) -> Iterator[Seeded]:
    from tests.motoserver import MotoServer

    server = MotoServer(workdir)
    server.start()
    try:
        provider = server.add_oidc_provider(issuer.issuer, audience="sts.amazonaws.com")
        role = server.add_role(
            "bench", provider_arn=provider, actions=["secretsmanager:GetSecretValue"]
        )
        client = server.client("secretsmanager")
        for i in range(count):
            client.create_secret(Name=f"bench/s{i}", SecretString=_value(i))
        store = {"kind": "aws", "region": "us-east-1", "endpointUrl": server.endpoint}
        paths = [f"secretsmanager:bench/s{i}" for i in range(count)]
        yield Seeded(store, role, "sts.amazonaws.com", paths)
    finally:
        server.stop()


@contextmanager
def _gcp(workdir: Path, issuer: Issuer, count: int) -> Iterator[Seeded]:  # noqa: ARG001
    from tests.gcpserver import GcpServer

    server = GcpServer(issuer)
    server.start()
    try:
        account = "bench@latchkey-test.iam.gserviceaccount.com"
        server.allow_impersonation(account, server.principal(NAMESPACE, SERVICE_ACCOUNT))
        for i in range(count):
            server.add_version(f"s{i}", _value(i))
            server.bind_accessor(f"s{i}", f"serviceAccount:{account}")
        paths = [f"s{i}" for i in range(count)]
        yield Seeded(server.store(), account, server.audience, paths)
    finally:
        server.stop()


@contextmanager
def _azure(workdir: Path, issuer: Issuer, count: int) -> Iterator[Seeded]:  # noqa: ARG001
    from tests.azureserver import AzureServer, FederatedCredential

    server = AzureServer(issuer)
    server.start()
    try:
        subject = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
        client_id = server.add_app(None, FederatedCredential(issuer.issuer, subject))
        server.grant(client_id)
        for i in range(count):
            server.set_secret(f"s{i}", _value(i))
        store = {
            "kind": "azure", "vaultUrl": server.vault_url, "tenantId": server.tenant,
            "clientId": client_id, "authorityHost": server.authority_host,
            "caBundle": server.ca_pem,
        }  # fmt: skip
        yield Seeded(
            store, client_id, "api://AzureADTokenExchange", [f"s{i}" for i in range(count)]
        )
    finally:
        server.stop()


SEEDERS: dict[str, Callable[[Path, Issuer, int], Any]] = {"aws": _aws, "gcp": _gcp, "azure": _azure}


def bench_path(kind: str, n_secrets: int = 10, runs: int = 5) -> dict[str, float]:
    """Median time to files (ms) and peak RSS (MiB) of ``--once`` reading ``n_secrets``."""
    with tempfile.TemporaryDirectory(prefix=f"latchkey-bench-{kind}-") as tmp:
        workdir = Path(tmp)
        issuer = Issuer()
        with SEEDERS[kind](workdir, issuer, n_secrets) as seeded:
            token = workdir / "token"
            token.write_text(
                issuer.mint(
                    namespace=NAMESPACE, service_account=SERVICE_ACCOUNT,
                    audience=seeded.audience,
                )
            )  # fmt: skip
            out = workdir / "out"
            config = {
                "store": seeded.store,
                "role": seeded.role,
                "tokenPath": str(token),
                "secretsDir": str(out),
                "stateDir": str(out.parent / "state"),
                "files": [{"name": f"s{i}", "path": p} for i, p in enumerate(seeded.paths)],
            }
            env = {**os.environ, "LATCHKEY_CONFIG": json.dumps(config)}
            # The same regular (non-editable) install the Vault path runs, as the image does.
            argv = [str(install(workdir)), "--once"]
            samples = [measure(argv, env=env, out=out, expect=n_secrets) for _ in range(runs + 1)]
    kept = samples[1:]  # the first run warms caches and is dropped
    return {
        "secrets": n_secrets,
        "runs": runs,
        "ms": statistics.median(s[0] for s in kept) * 1000,
        "mib": statistics.median(s[1] for s in kept),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--secrets", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"median of {args.runs} runs, {os.cpu_count()} CPUs")
    print("| path | secrets | ms | MiB |\n|---|---:|---:|---:|")
    for kind in args.kinds.split(","):
        row = bench_path(kind, args.secrets, args.runs)
        print(f"| {kind} (stand-in) | {row['secrets']:.0f} | {row['ms']:.0f} | {row['mib']:.1f} |")


if __name__ == "__main__":
    main()
