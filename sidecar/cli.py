"""The agent's flags, and running it: ``--once`` until a deadline, or until SIGTERM.

``--once`` (init containers, Jobs) retries what is worth retrying until the
deadline and never revokes its store token: dynamic secrets leased under it
would die with it. The long-running agent revokes its token when told to stop,
and only then: when it fails (before its first write, or on a bug) the token
stays in ``stateDir`` for the restarted agent to adopt, leases and all.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sidecar.errors import ConfigError
from sidecar.logs import Log

if TYPE_CHECKING:
    from sidecar.agent import Agent

DEFAULT_DEADLINE = 60.0
MAX_TIMEOUT = 10.0


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (start time)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("latchkey")
        except PackageNotFoundError:
            found = "unknown (not installed)"
        print(f"latchkey-sidecar {found}")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"usage: {message} (see latchkey-sidecar --help)")


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="latchkey-sidecar",
        description="Keep secrets from a store in files (and env values for the wrapper).",
        epilog="Also: latchkey-sidecar probe startup|liveness, the container's exec probes "
        "(exit 0 when the first write is done / the agent is alive).",
    )
    p.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    p.add_argument("--config", help="config file (JSON or YAML); default: $LATCHKEY_CONFIG")
    p.add_argument("--once", action="store_true", help="fetch, write and exit (init mode)")
    p.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="--once: seconds to keep retrying an unreachable store (60)",
    )
    store = p.add_argument_group("standalone store (replaces the config's store)")
    store.add_argument("--address", help="https://vault.example:8200")
    store.add_argument("--ca-file", help="PEM file of CA certificates to trust")
    store.add_argument("--namespace", help="Vault/OpenBao namespace")
    store.add_argument(
        "--auth-method",
        choices=["jwt", "kubernetes", "token"],
        default="jwt",
        help="jwt or kubernetes: log in with --token-path; token: use a store token "
        "($BAO_TOKEN, $VAULT_TOKEN or --store-token-file)",
    )
    store.add_argument("--store-token-file", help="token auth: file holding the store token")
    store.add_argument("--auth-mount", help="auth mount path (default: the method's name)")
    store.add_argument("--audience", default="vault", help="audience of the projected token")
    store.add_argument(
        "--gcp-credential-config",
        metavar="FILE",
        help="a Google Cloud Secret Manager store from the workload identity federation "
        "credential configuration that `gcloud iam workload-identity-pools create-cred-config` "
        "writes (a file credential source only)",
    )
    store.add_argument("--gcp-project", help="gcp: the project of short secret names")
    store.add_argument(
        "--azure-vault-url",
        metavar="URL",
        help="an Azure Key Vault store: https://NAME.vault.azure.net, logging in as "
        "$AZURE_CLIENT_ID of $AZURE_TENANT_ID with $AZURE_FEDERATED_TOKEN_FILE (the variables "
        "Azure Workload Identity sets; --role overrides the client id)",
    )
    what = p.add_argument_group("what to fetch (added to the config's)")
    what.add_argument("--role", help="store role to log in as")
    what.add_argument("--token-path", help="projected service-account token file")
    what.add_argument("--secret", action="append", default=[], metavar="NAME=PATH[#KEY]")
    what.add_argument("--format", action="append", default=[], metavar="NAME=FMT")
    what.add_argument("--template", action="append", default=[], metavar="NAME=TEXT")
    what.add_argument("--file-mode", action="append", default=[], metavar="NAME=OCTAL")
    what.add_argument("--env", action="append", default=[], metavar="VAR=PATH#KEY")
    what.add_argument("--env-file", help="where to write the env values (default: STATE_DIR/env)")
    what.add_argument(
        "--secrets-dir",
        help="directory of the secret files (in a pod /latchkey/secrets; off a cluster, "
        "with flags only, ./latchkey-secrets)",
    )
    what.add_argument(
        "--state-dir",
        help="the agent's own files: probes, saved login (in a pod /var/run/latchkey.dev/"
        "state; off a cluster ./latchkey-state)",
    )
    what.add_argument("--wrapper-dir", help="install the env wrapper here")
    what.add_argument("--refresh", help="re-read interval of static secrets: 30s, 5m, 1h")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT (long-running mode only)",
    )
    return p


def run(argv: Sequence[str], environ: Mapping[str, str], *, log: Log) -> int:
    from sidecar.sources import apply_flags, load_base, off_cluster, validate

    args = parser().parse_args(argv)
    base, source = load_base(args, environ)
    standalone = off_cluster(source, environ)
    config = validate(
        apply_flags(base, args, standalone=standalone, environ=environ), source=source
    )
    if standalone:
        log.info(
            "off a cluster: files go under",
            secrets_dir=config.secrets_dir,
            state_dir=config.state_dir,
        )
    if not config.files and not config.env:
        raise ConfigError(f"{source}: no files and no env: nothing to fetch")
    if args.metrics_port is not None and (args.once or not 0 < args.metrics_port < 65536):
        raise ConfigError("--metrics-port: a port 1-65535, and only without --once")

    from sidecar.agent import Agent
    from sidecar.stores import open_store

    timeout = min(MAX_TIMEOUT, args.deadline) if args.once else MAX_TIMEOUT
    store = open_store(config, log=log, timeout=timeout, environ=environ)
    _start_up_done()
    agent = Agent(config, store, log=log)
    if args.once:
        from sidecar.retry import retry_until

        try:
            retry_until(agent.start, deadline=args.deadline, log=log)
        finally:
            store.close(revoke=False)
        return 0
    return _long_running(agent, metrics_port=args.metrics_port, log=log)


def _long_running(agent: Agent, *, metrics_port: int | None, log: Log) -> int:
    from sidecar.loop import Loop
    from sidecar.metrics import Stats, serve

    stats = Stats()
    stop_metrics = serve(stats, port=metrics_port) if metrics_port else None
    stop = _stop_on_signals(log)
    stopped = False
    try:
        Loop(agent, stop=stop, stats=stats).run()
        stopped = True
    finally:
        agent.store.close(revoke=stopped)
        if stop_metrics is not None:
            stop_metrics()
    log.info("stopped")
    return 0


def _start_up_done() -> None:
    """The heavy imports are done (``__main__`` paused the cycle collector for them):
    keep what they built out of every later collection, and collect as usual again."""
    import gc

    gc.freeze()
    gc.enable()


def _stop_on_signals(log: Log) -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop
