"""Store kinds, each in its own module, imported only when a config names it.

The Vault path must not pay for botocore, nor the AWS path for httpx: the
agent's start-up time and memory are features (see docs/agent.md).
"""

from __future__ import annotations

from sidecar.auth import TokenFile
from sidecar.config import AgentConfig
from sidecar.logs import Log
from sidecar.stores.base import Store


def open_store(config: AgentConfig, *, log: Log, timeout: float = 10.0) -> Store:
    """The store ``config.store`` describes, not yet logged in."""
    token_file = TokenFile(config.token_path)
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
        config.store, role=config.role, token_file=token_file, log=log, timeout=timeout
    )
