"""Benchmark: the long-running agent at rest beside ``bao agent``, CPU and RSS.

    python hack/bench/idle.py [--minutes 10] [--secrets 10] [--refresh 30]

Both agents run at once against the same real OpenBao dev server over TLS, each
logged in with the same projected-token-shaped JWT and keeping ``--secrets`` KV v2
secrets in files, reading them again every ``--refresh`` seconds: ours as the
pod's sidecar runs it (``latchkey-sidecar`` with ``refreshSeconds``), bao agent
with JWT auto-auth, one template per secret and ``static_secret_render_interval``.
After a warm-up (both have written every file), the CPU each spends over the
window is read from /proc (user + system), and its resident set sampled every
few seconds (mean, and the kernel's high-water mark ``VmHWM``, reset at exec so
the launcher's size does not count). Then one secret changes, and the table says
whether each agent wrote the new value within two refresh intervals: an agent
that does not poll would look cheap.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hack.bench.agent import ACCOUNT, AUDIENCE, NAMESPACE, bao_agent, install, ours, seed
from hack.bench.common import cpu_seconds, rss_kib
from hack.localstore import Issuer, OpenBao

WARMUP_LIMIT = 60.0  # seconds for both agents to write every file
SAMPLE_EVERY = 5.0


def high_water_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def wait_for(check: Callable[[], bool], limit: float, what: str) -> float:
    """Seconds until ``check()`` holds; SystemExit naming ``what`` after ``limit``."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > limit:
            raise SystemExit(f"{what} did not happen within {limit:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - started


def _written(out: Path, count: int) -> bool:
    return len(list(out.glob("s*"))) >= count


def _changed(out: Path) -> bool:
    return "changed" in (out / "s0").read_text()


def bench(minutes: float, count: int, refresh: int) -> list[dict[str, float | str]]:
    memory = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="latchkey-idle-", dir=memory) as tmp:
        workdir = Path(tmp)
        issuer = Issuer()
        agent = install(workdir)
        store = OpenBao(workdir / "openbao")
        store.start()
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            seed(store, issuer, count)
            token = workdir / "token"
            ttl = int(minutes * 60 + 600)
            token.write_text(
                issuer.mint(
                    namespace=NAMESPACE, service_account=ACCOUNT, audience=AUDIENCE, ttl=ttl
                )
            )
            outs = {name: workdir / name / "out" for name in ("bao", "ours")}
            commands = {
                "bao": bao_agent(store, token, outs["bao"], count, workdir, refresh),
                "ours": ours(agent, store, token, outs["ours"], count, refresh),
            }
            for name, (argv, env) in commands.items():
                outs[name].mkdir(parents=True)
                log = (workdir / name / "run.log").open("wb")
                procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
            for name, out in outs.items():
                wait_for(functools.partial(_written, out, count), WARMUP_LIMIT, name)
            time.sleep(refresh)  # one refresh round done by both before the window
            return _window(store, procs, outs, minutes, refresh)
        finally:
            for proc in procs.values():
                proc.terminate()
                proc.wait(timeout=30)
            store.stop()


def _window(
    store: OpenBao,
    procs: dict[str, subprocess.Popen[bytes]],
    outs: dict[str, Path],
    minutes: float,
    refresh: int,
) -> list[dict[str, float | str]]:
    start = {name: cpu_seconds(p.pid) for name, p in procs.items()}
    samples: dict[str, list[int]] = {name: [] for name in procs}
    ends = time.monotonic() + minutes * 60
    while time.monotonic() < ends:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode} during the window")
            samples[name].append(rss_kib(proc.pid))
        time.sleep(SAMPLE_EVERY)
    spent = {name: cpu_seconds(p.pid) - start[name] for name, p in procs.items()}
    peaks = {name: high_water_kib(p.pid) for name, p in procs.items()}
    store.put_kv2("bench/s0", {"username": "user-0", "password": "changed"})
    picked: dict[str, str] = {}
    for name, out in outs.items():
        try:
            seconds = wait_for(functools.partial(_changed, out), 2 * refresh + 5, name)
            picked[name] = f"yes, {seconds:.0f}s"
        except SystemExit:
            picked[name] = "no"
    return [
        {
            "agent": name,
            "cpu_ms_per_min": spent[name] * 1000 / minutes,
            "cpu_s": spent[name],
            "rss_mib": statistics.mean(samples[name]) / 1024,
            "peak_mib": peaks[name] / 1024,
            "change": picked[name],
        }
        for name in procs
    ]


def table(rows: list[dict[str, float | str]], minutes: float, count: int, refresh: int) -> str:
    by = {str(r["agent"]): r for r in rows}
    bao, ours = by["bao"], by["ours"]
    lines = [
        f"long-running, {count} secrets, refresh {refresh}s, {minutes:g} min window, "
        f"{os.cpu_count()} CPUs",
        "| agent | CPU s | CPU ms/min | mean RSS MiB | peak RSS MiB | saw a change |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, r in (("bao agent", bao), ("latchkey", ours)):
        lines.append(
            f"| {label} | {r['cpu_s']:.2f} | {r['cpu_ms_per_min']:.0f} | {r['rss_mib']:.1f} | "
            f"{r['peak_mib']:.1f} | {r['change']} |"
        )
    cpu = float(ours["cpu_s"]) / max(float(bao["cpu_s"]), 1e-9)
    rss = float(ours["rss_mib"]) / float(bao["rss_mib"])
    lines.append(f"ratios (latchkey / bao agent): CPU {cpu:.2f}x, mean RSS {rss:.2f}x")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--secrets", type=int, default=10)
    parser.add_argument("--refresh", type=int, default=30)
    args = parser.parse_args()
    rows = bench(args.minutes, args.secrets, args.refresh)
    print(table(rows, args.minutes, args.secrets, args.refresh))


if __name__ == "__main__":
    main()
