"""Store kinds, each in its own module, imported only when a config names it.

The Vault path must not pay for botocore, nor any path for a cloud SDK or an HTTP
library (``vault``, ``gcp`` and ``azure`` speak their JSON APIs through the standard
library's :mod:`http.client`, :mod:`sidecar.stores.https`): the agent's start-up
time and memory are features (see docs/agent.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.auth import EnvToken, TokenFile
from sidecar.config import AgentConfig
from sidecar.logs import Log
from sidecar.stores.base import Store


def open_store(
    config: AgentConfig,
    *,
    log: Log,
    timeout: float = 10.0,
    environ: Mapping[str, str] | None = None,
) -> Store:
    """The store ``config.store`` describes, not yet logged in; ``environ`` holds the
    store token for token auth."""
    token_file = TokenFile(config.token_path)
    if config.store.kind == "vault":
        from sidecar.state import StateDir
        from sidecar.stores.vault import VaultStore

        given = config.store.auth.token_file
        login_token: TokenFile | EnvToken = token_file
        if config.store.auth.method == "token":
            login_token = (
                TokenFile(given, what="store token file", hint="")
                if given
                else EnvToken(environ or {})
            )
        return VaultStore(
            config.store,
            role=config.role,
            token_file=login_token,
            log=log,
            timeout=timeout,
            state=StateDir(config.state_dir, log=log),
        )
    if config.store.kind == "gcp":
        from sidecar.stores.gcp import GcpSecretStore

        return GcpSecretStore(
            config.store, role=config.role, token_file=token_file, log=log, timeout=timeout
        )
    if config.store.kind == "azure":
        from sidecar.stores.azure import AzureSecretStore

        return AzureSecretStore(
            config.store, role=config.role, token_file=token_file, log=log, timeout=timeout
        )
    from sidecar.stores.aws import AwsSecretStore

    return AwsSecretStore(
        config.store, role=config.role, token_file=token_file, log=log, timeout=timeout
    )
