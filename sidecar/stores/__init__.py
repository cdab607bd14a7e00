"""Store kinds, each in its own module, imported only when a config names it.

The Vault path must not pay for botocore, nor the AWS path for httpx: the
agent's start-up time and memory are features (see docs/agent.md).
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
    token_file: TokenFile | EnvToken = TokenFile(config.token_path)
    if config.store.kind == "vault" and config.store.auth.method == "token":
        given = config.store.auth.token_file
        token_file = (
            TokenFile(given, what="store token file", hint="") if given else EnvToken(environ or {})
        )
    if config.store.kind == "vault":
        from sidecar.state import StateDir
        from sidecar.stores.vault import VaultStore

        state = StateDir(config.state_dir, log=log)
        return VaultStore(
            config.store,
            role=config.role,
            token_file=token_file,
            log=log,
            timeout=timeout,
            state=state,
        )
    from sidecar.stores.aws import AwsSecretStore

    return AwsSecretStore(
        config.store, role=config.role, token_file=TokenFile(config.token_path), log=log,
        timeout=timeout,
    )  # fmt: skip
