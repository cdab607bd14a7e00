"""Where the agent's config comes from: ``LATCHKEY_CONFIG``, ``--config FILE``, flags.

The webhook sets ``LATCHKEY_CONFIG``; a user without the webhook writes a file
or passes flags. Flags go over the file or env config (``--address`` replaces
the whole store), so one can also tweak an injected config by hand. Everything
ends in one validation by :class:`sidecar.config.AgentConfig`, and every
problem is a :class:`ConfigError` naming its source and field.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecar.config import (
    CONFIG_ENV,
    ENV_FILE_NAME,
    STATE_DIR,
    AgentConfig,
    ContractError,
    GcpEndpoints,
    as_dict,
    parse,
    parse_duration,
)
from sidecar.errors import ConfigError


def _refresh_seconds(text: str) -> int:
    try:
        return parse_duration(text.strip())
    except ValueError:
        raise ConfigError(
            f"--refresh {text!r}: use a duration such as 30s, 5m, 1h or 1h30m"
        ) from None


def _pair(flag: str, value: str) -> tuple[str, str]:
    name, sep, rest = value.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"{flag} {value!r}: expected NAME=VALUE")
    return name, rest


def _path_key(flag: str, value: str) -> tuple[str, str | None]:
    path, _, key = value.partition("#")
    if not path:
        raise ConfigError(f"{flag}: {value!r} has no store path")
    return path, key or None


def load_base(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The config dict from ``--config FILE`` or ``LATCHKEY_CONFIG``, and its source's name."""
    if args.config:
        source = str(args.config)
        try:
            text = Path(args.config).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--config {source}: {exc.strerror}") from exc
        return _parse(text, source=source, yaml_ok=True), source
    if environ.get(CONFIG_ENV):
        return _parse(environ[CONFIG_ENV], source=CONFIG_ENV, yaml_ok=False), CONFIG_ENV
    return {}, "flags"


def _parse(text: str, *, source: str, yaml_ok: bool) -> dict[str, Any]:
    try:
        if yaml_ok and not text.lstrip().startswith("{"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and yaml.YAMLError's parsers
        raise ConfigError(
            f"{source}: not valid JSON{' or YAML' if yaml_ok else ''}: {exc}"
        ) from exc
    except Exception as exc:  # yaml.YAMLError is not a ValueError
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys")
    return data


# Off a cluster (flags only, no Kubernetes service in the environment) the in-pod
# defaults /latchkey/secrets and /var/run/latchkey.dev/state make no sense.
OFF_CLUSTER_DIRS = {"secretsDir": "latchkey-secrets", "stateDir": "latchkey-state"}


def off_cluster(source: str, environ: Mapping[str, str]) -> bool:
    """A standalone run on a laptop or in CI: the config is flags, and no pod around it."""
    return source == "flags" and "KUBERNETES_SERVICE_HOST" not in environ


def apply_flags(
    config: dict[str, Any],
    args: argparse.Namespace,
    *,
    standalone: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Lay the standalone flags over ``config``; ``standalone``: default the directories
    to ones under the current directory (:data:`OFF_CLUSTER_DIRS`)."""
    config = dict(config)
    if standalone:
        for key, directory in OFF_CLUSTER_DIRS.items():
            config.setdefault(key, str(Path.cwd() / directory))
    chosen = [
        f for f in ("address", "gcp_credential_config", "azure_vault_url") if getattr(args, f)
    ]
    if len(chosen) > 1:
        flags = " and ".join("--" + f.replace("_", "-") for f in chosen)
        raise ConfigError(f"{flags}: give one store")
    if args.address:
        config["store"] = _store_from_flags(args)
    if args.gcp_credential_config:
        config.update(_gcp_from_flags(args, config.get("store")))
    if args.azure_vault_url:
        config.update(_azure_from_flags(args, environ or {}))
    scalars = {
        "role": args.role,
        "tokenPath": args.token_path,
        "secretsDir": args.secrets_dir,
        "stateDir": args.state_dir,
        "envFile": args.env_file,
        "wrapperDir": args.wrapper_dir,
    }
    config.update({k: v for k, v in scalars.items() if v is not None})
    if args.refresh:
        config["refreshSeconds"] = _refresh_seconds(args.refresh)
    files = [*config.get("files", []), *_files_from_flags(args)]
    if files:
        config["files"] = files
    env = [*config.get("env", []), *_env_from_flags(args)]
    if env:
        config["env"] = env
        state_dir = config.get("stateDir", str(STATE_DIR))
        config.setdefault("envFile", str(Path(state_dir) / ENV_FILE_NAME))
    return config


def _store_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    store: dict[str, Any] = {
        "kind": "vault",
        "address": args.address,
        "namespace": args.namespace or "",
        "auth": {"method": args.auth_method, "mount": args.auth_mount or ""},
    }
    if args.auth_method == "token":
        if args.store_token_file:
            store["auth"]["tokenFile"] = args.store_token_file
    else:
        store["auth"]["audience"] = args.audience
    return {**store, **_ca_bundle(args)}


def _ca_bundle(args: argparse.Namespace) -> dict[str, str]:
    if not args.ca_file:
        return {}
    try:
        return {"caBundle": Path(args.ca_file).read_text(encoding="utf-8")}
    except OSError as exc:
        raise ConfigError(f"--ca-file {args.ca_file}: {exc.strerror}") from exc


def _gcp_from_flags(args: argparse.Namespace, given: object) -> dict[str, Any]:
    """The store, role and token path a credential configuration file describes. Its URLs
    may name Google's endpoints or those of a ``gcp`` store in the config it replaces
    (the admin's private endpoints), nothing else."""
    from sidecar.stores.gcp_credconfig import from_credential_config

    source = f"--gcp-credential-config {args.gcp_credential_config}"
    try:
        text = Path(args.gcp_credential_config).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{source}: {exc.strerror}") from exc
    info = _parse(text, source=source, yaml_ok=False)
    endpoints = None
    if isinstance(given, dict) and given.get("kind") == "gcp":
        try:
            endpoints = parse(GcpEndpoints, given.get("endpoints") or {}, name="endpoints")
        except ContractError as exc:
            raise ConfigError(f"{source}: store.{exc}") from None
    try:
        found = from_credential_config(
            info,
            project=args.gcp_project,
            endpoints=endpoints,
            ca_bundle=_ca_bundle(args).get("caBundle"),
        )
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    store = as_dict(found.store)
    return {"store": store, "role": found.role, "tokenPath": found.token_path}


# What Azure Workload Identity's own webhook sets in a pod, so the agent reads the same.
AZURE_ENV = {
    "tenantId": "AZURE_TENANT_ID",
    "clientId": "AZURE_CLIENT_ID",
    "tokenPath": "AZURE_FEDERATED_TOKEN_FILE",
    "authorityHost": "AZURE_AUTHORITY_HOST",
}


def _azure_from_flags(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """The store (and token path) for ``--azure-vault-url``, from Azure's env variables."""
    found = {key: environ[name] for key, name in AZURE_ENV.items() if environ.get(name)}
    for key in ("tenantId", "clientId"):
        if key not in found and not (key == "clientId" and args.role):
            hint = " (or --role for a client id)" if key == "clientId" else ""
            raise ConfigError(f"--azure-vault-url needs ${AZURE_ENV[key]}{hint}")
    store: dict[str, Any] = {"kind": "azure", "vaultUrl": args.azure_vault_url}
    store.update({k: v for k, v in found.items() if k != "tokenPath"})
    store.setdefault("clientId", args.role)
    update: dict[str, Any] = {"store": {**store, **_ca_bundle(args)}}
    if "tokenPath" in found:
        update["tokenPath"] = found["tokenPath"]
    return update


def _files_from_flags(args: argparse.Namespace) -> list[dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {}
    for value in args.secret:
        name, target = _pair("--secret", value)
        path, key = _path_key("--secret", target)
        files[name] = {"name": name, "path": path, **({"key": key} if key else {})}
    for flag, field, values in (
        ("--format", "format", args.format),
        ("--template", "template", args.template),
        ("--file-mode", "mode", args.file_mode),
    ):
        for value in values:
            name, setting = _pair(flag, value)
            if name not in files:
                raise ConfigError(f"{flag} {name}: no --secret {name}=PATH names that file")
            files[name][field] = _mode(name, setting) if field == "mode" else setting
    return list(files.values())


def _mode(name: str, value: str) -> int:
    try:
        return int(value, 8)
    except ValueError:
        raise ConfigError(f"--file-mode {name}: {value!r} is not an octal mode like 0440") from None


def _env_from_flags(args: argparse.Namespace) -> list[dict[str, Any]]:
    env = []
    for value in args.env:
        name, target = _pair("--env", value)
        path, key = _path_key("--env", target)
        if key is None:
            raise ConfigError(f"--env {name}: name one field, as in {name}=PATH#KEY")
        env.append({"name": name, "path": path, "key": key})
    return env


def validate(data: dict[str, Any], *, source: str) -> AgentConfig:
    """One validation; its error names the source and the bad field."""
    try:
        return parse(AgentConfig, data)
    except ContractError as exc:
        raise ConfigError(f"{source}: {exc}") from None
