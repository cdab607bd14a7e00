"""AWS error codes to the agent's typed errors: the one table, pure, no botocore.

:mod:`sidecar.stores.aws` hands over what botocore parsed (code, HTTP status,
AWS's message); this module decides what the agent does with it. AWS's messages
name roles, ARNs and parameters but never a secret value, so they are kept,
short and on one line, after the role, region and path the agent knows.
"""

from __future__ import annotations

from sidecar.errors import (
    LoginDenied,
    PermissionDenied,
    SecretNotFound,
    StoreError,
    StoreUnavailable,
)
from sidecar.stores.schedule import LoginRejected

# Worth retrying: AWS is busy or failing, or STS could not reach the token's issuer.
UNAVAILABLE = frozenset({
    "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
    "InternalFailure", "InternalServiceError", "ServiceUnavailable", "IDPCommunicationError",
})  # fmt: skip
# The role credentials are no good any more: a new login may cure it.
REJECTED = frozenset({
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
})  # fmt: skip
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "DecryptionFailure"})
NOT_FOUND = frozenset(
    {"ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"}
)


class CredentialsRejected(LoginRejected):
    """AWS no longer accepts the role credentials (expired, or STS forgot them)."""


def translate(
    code: str, status: int, message: str, *, where: str, role: str, what: str, subject: str
) -> StoreError:
    """The typed error for one AWS answer; ``subject`` is the path read, empty for a login."""
    reason = " ".join((message or "no reason given").split())[:300]
    detail = f"{code}: {reason}"
    if code in UNAVAILABLE or status == 429 or status >= 500:
        return StoreUnavailable(f"{where} answered {status} {what} ({detail})")
    if not subject:
        return LoginDenied(f"{where} denied {what} ({detail})")
    if code in REJECTED:
        return CredentialsRejected(
            f"{where} rejected the credentials of role {role} {what} ({detail})"
        )
    if code in DENIED or status == 403:
        return PermissionDenied(f"role {role} may not read {subject} in {where} ({detail})")
    if code in NOT_FOUND or status == 404:
        return SecretNotFound(f"nothing at {subject} in {where} ({detail})")
    return SecretNotFound(f"{where} cannot give {subject} ({detail})")
