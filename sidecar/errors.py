"""The agent's errors; ``sidecar.__main__`` maps each to one exit code.

    AgentError                 exit
    ├── ConfigError              2   LATCHKEY_CONFIG, --config or flags unusable
    ├── TokenError               3   projected token file missing or unreadable
    ├── StoreError
    │   ├── StoreUnavailable     4   network, TLS, timeout, 429, 5xx (retried until a deadline)
    │   ├── LoginDenied          5   the store refused the login (role, audience, expired token)
    │   ├── PermissionDenied     6   logged in, but the role may not read the path
    │   └── SecretNotFound       7   nothing at the path
    ├── RenderError              8   a key is missing or a template does not fit the secret
    └── WriteError               9   a file could not be written

Messages name the store, role, path, key or file, never a secret value.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises on purpose."""

    exit_code = 1
    retryable = False


class ConfigError(AgentError):
    """The agent's configuration is missing or invalid."""

    exit_code = 2


class TokenError(AgentError):
    """The projected service-account token cannot be read."""

    exit_code = 3


class StoreError(AgentError):
    """The secret store answered with an error, or did not answer."""


class StoreUnavailable(StoreError):
    """The store could not be reached or is failing; worth retrying."""

    exit_code = 4
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LoginDenied(StoreError):
    """The store refused to log in with the projected token."""

    exit_code = 5


class PermissionDenied(StoreError):
    """The store token may not read this path."""

    exit_code = 6


class SecretNotFound(StoreError):
    """The store has nothing at this path."""

    exit_code = 7


class RenderError(AgentError):
    """The secret does not fit the requested key, format or template."""

    exit_code = 8


class WriteError(AgentError):
    """A secret file could not be written."""

    exit_code = 9
