"""Benchmark: the agent's ``--once`` beside ``bao agent``, time to files and peak RSS.

Both fetch N KV v2 secrets (N = 1, 10, 100) from the same real OpenBao dev
server over TLS, logging in with the same projected-token-shaped JWT, and write
one file per secret, then exit: ours with ``--once``, bao agent with JWT
auto-auth, one template per secret and ``exit_after_auth`` (it renders every
template once, then exits). Each run is a fresh process; its wall time from
spawn to exit (all files written) and its peak RSS (``wait4``'s ``ru_maxrss``,
taken by a small spawning interpreter so this one's size does not leak in)
are taken, runs interleaved so machine noise hits both alike; medians printed
with ratios. Targets (issue 13): time <= 0.6x and peak RSS <= 0.35x at every size.

Ours runs as the image runs it: the ``latchkey-sidecar`` console script of a
regular (not editable) install with the agent's own dependencies, built once per
bench run into a temp venv, so neither the dev venv's editable finder nor a
package only the webhook or the tests need (pydantic, typing_extensions) counts.
Each run starts with an empty ``stateDir``: a saved store
token would spare ours the login that bao agent makes every time. Files are
written to ``/dev/shm`` (tmpfs) where there is one, as into a pod's memory volume.

    python hack/bench/agent.py [--runs 7] [--sizes 1,10,100]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.localstore import Issuer, OpenBao, bao_binary

ROOT = Path(__file__).resolve().parents[2]

ROLE, NAMESPACE, ACCOUNT, AUDIENCE = "bench", "bench", "app", "openbao"
Run = tuple[float, float]  # seconds, MiB


def seed(store: OpenBao, issuer: Issuer, count: int) -> None:
    """JWT auth, a read policy and ``count`` secrets at secret/data/bench/sN."""
    store.enable_jwt(issuer)
    store.write_policy("bench", 'path "secret/data/bench/*" { capabilities = ["read"] }')
    store.add_jwt_role(
        ROLE, namespace=NAMESPACE, service_account=ACCOUNT, audience=AUDIENCE, policies=["bench"]
    )
    for i in range(count):
        store.put_kv2(f"bench/s{i}", {"username": f"user-{i}", "password": f"pw-{i:04d}"})


# Spawned by a small interpreter, not by this one: the kernel counts a child's RSS
# before its exec into ru_maxrss, so a child forked from this big process would
# report at least this process's size.
_MEASURE = """
import json, os, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
actions = [(os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)]
started = time.perf_counter()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
print(json.dumps({"seconds": elapsed, "mib": usage.ru_maxrss / 1024, "code": code}))
"""


def install(workdir: Path) -> Path:
    """``latchkey-sidecar`` from a regular install of this tree into a fresh venv, with
    the agent's own dependencies only (``.[aws]``, as its image installs), so nothing the
    dev venv holds for the webhook or the tests is found, or imported, by the agent."""
    source, venv = workdir / "src", workdir / "venv"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("sidecar", "webhook"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "bin")
        )
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*pip, "install", "--quiet", "--disable-pip-version-check", f"{source}[aws]"],
        check=True, capture_output=True,
    )  # fmt: skip
    return venv / "bin" / "latchkey-sidecar"


def measure(argv: list[str], *, env: dict[str, str], out: Path, expect: int) -> Run:
    """Spawn, wait, and return (wall seconds, peak RSS MiB); fail loudly on a bad run."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.parent / "state", ignore_errors=True)
    out.mkdir(parents=True)
    log = out.parent / "run.log"
    helper = [sys.executable, "-I", "-S", "-c", _MEASURE, str(log), *argv]
    result = json.loads(subprocess.run(helper, env=env, capture_output=True, check=True).stdout)
    written = len(list(out.iterdir()))
    if result["code"] != 0 or written != expect:
        output = log.read_text(errors="replace")
        raise SystemExit(f"{argv[0]} failed ({result['code']}, {written}/{expect}):\n{output}")
    return result["seconds"], result["mib"]


def ours(
    agent: Path, store: OpenBao, token: Path, out: Path, count: int, refresh: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """``--once``, or with ``refresh`` the long-running agent reading every N seconds."""
    config: dict[str, object] = {
        "store": {
            "kind": "vault",
            "address": store.address,
            "caBundle": store.ca_file.read_text(),
            "auth": {"method": "jwt", "audience": AUDIENCE},
        },
        "role": ROLE,
        "tokenPath": str(token),
        "secretsDir": str(out),
        "stateDir": str(out.parent / "state"),
        "files": [{"name": f"s{i}", "path": f"secret/data/bench/s{i}"} for i in range(count)],
    }
    if refresh is not None:
        config["refreshSeconds"] = refresh
    env = {**os.environ, "LATCHKEY_CONFIG": json.dumps(config)}
    return [str(agent)] if refresh is not None else [str(agent), "--once"], env


def bao_agent(
    store: OpenBao,
    token: Path,
    out: Path,
    count: int,
    workdir: Path,
    refresh: int | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Render once and exit, or with ``refresh`` keep rendering every N seconds."""
    templates = "".join(
        "template {\n"
        f'  contents = "{{{{ with secret \\"secret/data/bench/s{i}\\" }}}}'
        '{{ .Data.data | toJSON }}{{ end }}"\n'
        f'  destination = "{out}/s{i}"\n'
        "  error_on_missing_key = true\n}\n"
        for i in range(count)
    )
    mode = (
        "exit_after_auth = true\ntemplate_config {\n  exit_on_retry_failure = true\n}\n"
        if refresh is None
        else f'template_config {{\n  static_secret_render_interval = "{refresh}s"\n}}\n'
    )
    hcl = (
        f'vault {{\n  address = "{store.address}"\n  ca_cert = "{store.ca_file}"\n}}\n'
        'auto_auth {\n  method "jwt" {\n    mount_path = "auth/jwt"\n'
        f'    config = {{\n      path = "{token}"\n      role = "{ROLE}"\n'
        "      remove_jwt_after_reading = false\n    }\n  }\n}\n" + mode + templates
    )
    config = workdir / f"bao-agent-{count}{'' if refresh is None else '-idle'}.hcl"
    config.write_text(hcl)
    return [bao_binary(), "agent", f"-config={config}"], dict(os.environ)


def bench(sizes: list[int], runs: int) -> list[dict[str, float]]:
    rows = []
    # Files land where a pod's do: a memory-backed directory (SPEC: emptyDir, medium
    # Memory), so neither tool pays for a disk's fsync here when it would not there.
    memory = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="latchkey-bench-", dir=memory) as tmp:
        workdir = Path(tmp)
        issuer = Issuer()
        agent = install(workdir)
        store = OpenBao(workdir / "openbao")
        store.start()
        try:
            seed(store, issuer, max(sizes))
            token = workdir / "token"
            token.write_text(
                issuer.mint(namespace=NAMESPACE, service_account=ACCOUNT, audience=AUDIENCE)
            )
            for count in sizes:
                rows.append(_size(agent, store, token, workdir, count, runs))
        finally:
            store.stop()
    return rows


def _size(
    agent: Path, store: OpenBao, token: Path, workdir: Path, count: int, runs: int
) -> dict[str, float]:
    out = workdir / "out"
    tools: dict[str, Callable[[], tuple[list[str], dict[str, str]]]] = {
        "bao": lambda: bao_agent(store, token, out, count, workdir),
        "ours": lambda: ours(agent, store, token, out, count),
    }
    results: dict[str, list[Run]] = {name: [] for name in tools}
    for _ in range(runs + 1):  # the first round warms caches and is dropped
        for name, command in tools.items():
            argv, env = command()
            results[name].append(measure(argv, env=env, out=out, expect=count))
    row: dict[str, float] = {"secrets": count}
    for name, samples in results.items():
        row[f"{name}_ms"] = statistics.median(s[0] for s in samples[1:]) * 1000
        row[f"{name}_mib"] = statistics.median(s[1] for s in samples[1:])
    row["time_ratio"] = row["ours_ms"] / row["bao_ms"]
    row["rss_ratio"] = row["ours_mib"] / row["bao_mib"]
    return row


def table(rows: list[dict[str, float]]) -> str:
    lines = [
        "| secrets | bao agent ms | latchkey ms | time ratio "
        "| bao agent MiB | latchkey MiB | RSS ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['secrets']:.0f} | {r['bao_ms']:.0f} | {r['ours_ms']:.0f} | "
            f"{r['time_ratio']:.2f}x | {r['bao_mib']:.1f} | {r['ours_mib']:.1f} | "
            f"{r['rss_ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument(
        "--cloud-secrets", type=int, default=10, help="0 skips the aws, gcp and azure paths"
    )
    args = parser.parse_args()
    rows = bench([int(s) for s in args.sizes.split(",")], args.runs)
    print(f"median of {args.runs} runs each, {os.cpu_count()} CPUs")
    print(table(rows))
    if args.cloud_secrets:
        print(clouds_beside_vault(rows, args.cloud_secrets, args.runs))


def clouds_beside_vault(rows: list[dict[str, float]], count: int, runs: int) -> str:
    """Each cloud store (its stand-in on loopback) for ``count`` secrets, beside the Vault
    row of the same size."""
    from hack.bench.cloud_paths import KINDS, bench_path  # it imports this module

    vault = next((r for r in rows if r["secrets"] == count), None)
    lines = [
        f"\ncloud paths, {count} secrets (stand-ins on loopback), beside the Vault path",
        "| path | ms | MiB | time vs Vault | RSS vs Vault |",
        "|---|---:|---:|---:|---:|",
    ]
    if vault is not None:
        lines.append(
            f"| vault | {vault['ours_ms']:.0f} | {vault['ours_mib']:.1f} | 1.00x | 1.00x |"
        )
    for kind in KINDS:
        row = bench_path(kind, count, runs)
        ratios = "| - | - |"
        if vault is not None:
            ratios = (
                f"| {row['ms'] / vault['ours_ms']:.2f}x | {row['mib'] / vault['ours_mib']:.2f}x |"
            )
        lines.append(f"| {kind} | {row['ms']:.0f} | {row['mib']:.1f} {ratios}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
