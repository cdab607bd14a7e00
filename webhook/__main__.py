"""``latchkey-webhook``: serve admission reviews over HTTPS, or inject manifests.

The only place that reads flags and the environment: settings are resolved
here once (a flag wins over its env var, which wins over the default) and
passed down. Errors the user can fix end the process with a one-line message
and exit code 2 (1 for a denied manifest), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import yaml

from webhook.errors import ConfigError, Denied

PROG = "latchkey-webhook"
DESCRIPTION = "Serve admission reviews over HTTPS, or print manifests as they would be injected."
# Admin tools with their own flags: ``latchkey-webhook NAME --help`` shows them.
TOOLS = {
    "store-setup": ("webhook.store_setup", "configure OpenBao or Vault for the cluster's pods"),
    "certs": ("webhook.plain_certs", "TLS for the plain (no cert-manager) install"),
}
COMMANDS = ("serve", "inject", *TOOLS, "-h", "--help", "--version")
ENV = {
    "config": "LATCHKEY_CONFIG_FILE",
    "tls_cert_file": "LATCHKEY_TLS_CERT_FILE",
    "tls_key_file": "LATCHKEY_TLS_KEY_FILE",
    "host": "LATCHKEY_HOST",
    "port": "LATCHKEY_PORT",
    "log_level": "LATCHKEY_LOG_LEVEL",
    "max_connections": "LATCHKEY_MAX_CONNECTIONS",
    "read_timeout": "LATCHKEY_READ_TIMEOUT",
}
DEFAULTS = {
    "host": "0.0.0.0",
    "port": "8443",
    "log_level": "info",
    "max_connections": "256",
    "read_timeout": "10",
}
# LogRecord's own attributes; anything else on a record came from ``extra=``.
RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


@dataclass(frozen=True)
class ServeSettings:
    config: Path
    tls_cert_file: Path
    tls_key_file: Path
    host: str
    port: int
    log_level: str
    max_connections: int = 256
    read_timeout: float = 10.0


# json.dumps(entry, default=str) would build this encoder anew for every line.
_encode = json.JSONEncoder(default=str).encode
_second: tuple[int, str] = (-1, "")  # the last whole second logged, as ISO date and time


def utc_iso(timestamp: float) -> str:
    """``datetime.fromtimestamp(timestamp, UTC).isoformat()`` for a time after 1970, the
    date and time written once per second: a review's log line spent more on building a
    datetime than on the rest of its formatting. Microseconds are rounded as datetime
    rounds them (half to even), and left out when zero, as isoformat leaves them."""
    global _second
    whole = int(timestamp)
    micros = round((timestamp - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    second, text = _second
    if second != whole:
        text = dt.datetime.fromtimestamp(whole, dt.UTC).isoformat().removesuffix("+00:00")
        _second = (whole, text)
    return f"{text}.{micros:06d}+00:00" if micros else f"{text}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, so a traceback stays one log entry."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": utc_iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in RECORD_FIELDS)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encode(entry)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latchkey")
    except PackageNotFoundError:
        return "unknown (not installed)"


# What the webhook extra brings; the agent-only install (`pip install latchkey`) lacks it.
WEB_STACK = ("fastapi", "uvicorn", "jsonpatch", "orjson", "cryptography", "pydantic", "httpx")


def _require_web_stack() -> None:
    from importlib.util import find_spec

    missing = [name for name in WEB_STACK if find_spec(name) is None]
    if missing:
        _fail(
            "this needs the webhook extra, which this installation lacks "
            f"(no module {', '.join(missing)}): pip install 'latchkey[webhook]'"
        )


def _fail(message: str, code: int = 2) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve /mutate over HTTPS (the default)")
    serve.add_argument("--config", help=f"admin config YAML (env {ENV['config']})")
    serve.add_argument("--tls-cert-file", help=f"PEM certificate (env {ENV['tls_cert_file']})")
    serve.add_argument("--tls-key-file", help=f"PEM private key (env {ENV['tls_key_file']})")
    serve.add_argument("--host", help=f"listen address (env {ENV['host']}; default 0.0.0.0)")
    serve.add_argument("--port", help=f"listen port (env {ENV['port']}; default 8443)")
    serve.add_argument("--log-level", help=f"debug, info, warning (env {ENV['log_level']})")
    serve.add_argument(
        "--max-connections",
        help=f"open connections per process; beyond, the slowest is dropped "
        f"(env {ENV['max_connections']}; default 256)",
    )
    serve.add_argument(
        "--read-timeout",
        help=f"seconds a client has to send a whole request (env {ENV['read_timeout']}; "
        "default 10)",
    )
    for name, (_, summary) in TOOLS.items():
        commands.add_parser(name, help=summary, add_help=False)
    inject = commands.add_parser("inject", help="print manifests as they would be injected")
    inject.add_argument("--config", help=f"admin config YAML (env {ENV['config']})")
    inject.add_argument("-f", "--filename", required=True, help="manifest YAML; - for stdin")
    inject.add_argument(
        "-n", "--namespace", help="namespace of documents that name none (default: default)"
    )
    return parser


def _resolve(args: argparse.Namespace, env: Mapping[str, str], name: str) -> str:
    value = getattr(args, name, None) or env.get(ENV[name]) or DEFAULTS.get(name)
    if not value:
        flag = "--" + name.replace("_", "-")
        _fail(f"{flag} (or env {ENV[name]}) is required")
    return value


def serve_settings(args: argparse.Namespace, env: Mapping[str, str]) -> ServeSettings:
    """The serve flags, each falling back to its env var, then to its default."""
    port = _resolve(args, env, "port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        _fail(f"port {port!r} is not a TCP port (1-65535)")
    return ServeSettings(
        config=Path(_resolve(args, env, "config")),
        tls_cert_file=Path(_resolve(args, env, "tls_cert_file")),
        tls_key_file=Path(_resolve(args, env, "tls_key_file")),
        host=_resolve(args, env, "host"),
        port=int(port),
        log_level=_resolve(args, env, "log_level").upper(),
        max_connections=_bounded(args, env, "max_connections", int, 1, 100_000),
        read_timeout=_bounded(args, env, "read_timeout", float, 0.1, 300),
    )


def _bounded(
    args: argparse.Namespace, env: Mapping[str, str], name: str, kind: type, low: float,
    high: float,
) -> Any:  # fmt: skip
    text = _resolve(args, env, name)
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        _fail(f"{name.replace('_', '-')} {text!r} is not a number from {low:g} to {high:g}")
    return value


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # What JsonFormatter never writes need not be gathered for every record: the caller's
    # frame, the thread and the process (the logging HOWTO's "Optimization" switches).
    # ~3 µs of each review's log line.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def serve(settings: ServeSettings) -> None:
    """Run uvicorn over HTTPS with the reloading certificate; blocks until stopped."""
    import uvicorn

    from webhook.app import create_app
    from webhook.limits import BoundedH11Protocol
    from webhook.settings import load_config, registry_warning
    from webhook.tls import ReloadingTLS

    BoundedH11Protocol.max_connections = settings.max_connections
    BoundedH11Protocol.read_timeout = settings.read_timeout

    config = load_config(settings.config)
    tls = ReloadingTLS(settings.tls_cert_file, settings.tls_key_file)
    configure_logging(settings.log_level)
    if warning := registry_warning(config):
        logging.getLogger(PROG).warning(warning)
    server = uvicorn.Config(
        create_app(config, tls=tls),
        host=settings.host,
        port=settings.port,
        ssl_context_factory=lambda _config, _default: tls.server_context(),
        log_config=None,
        access_log=False,
        server_header=False,
        http=BoundedH11Protocol,
        timeout_keep_alive=5,
    )
    uvicorn.Server(server).run()


def inject(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """Print the manifest after injection; warnings and denials go to stderr."""
    from webhook.manifests import inject_manifests
    from webhook.settings import load_config, registry_warning

    config = load_config(Path(_resolve(args, env, "config")))
    if warning := registry_warning(config):
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    namespace = args.namespace or "default"
    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        result = inject_manifests(text, config=config, namespace=namespace)
    except OSError as exc:
        _fail(f"cannot read {args.filename}: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        _fail(f"{args.filename} is not YAML: {exc}")
    except Denied as exc:
        _fail(f"denied: {exc}", code=1)
    for warning in result.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    sys.stdout.write(result.text)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if not argv or argv[0] not in COMMANDS:
        argv.insert(0, "serve")
    if argv[0] in TOOLS:
        import importlib

        tool = importlib.import_module(TOOLS[argv[0]][0])
        tool.main(argv[1:], prog=f"{PROG} {argv[0]}")
        return
    args = _parser().parse_args(argv)
    _require_web_stack()
    try:
        if args.command == "inject":
            inject(args, env)
        else:
            serve(serve_settings(args, env))
    except ConfigError as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
