"""What Google's error answers mean to the agent: the one table, pure, no I/O.

:mod:`sidecar.stores.gcp` hands over each failed :class:`~sidecar.stores.cloud_http.Answer`
with what it knows (who asked, for what); this module says which typed error it is and
what a platform engineer should check. Google's own error text is kept, short and on one
line (:func:`~sidecar.stores.cloud_http.reason`): it names principals and resources,
never a secret value.
"""

from __future__ import annotations

from sidecar.errors import LoginDenied, PermissionDenied, SecretNotFound, StoreError
from sidecar.paths.gcp import GcpRef
from sidecar.stores.cloud_http import Answer, reason
from sidecar.stores.schedule import LoginRejected

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"  # noqa: S105


def federated_principal(provider: str, subject: str) -> str:
    """The IAM principal of a federated subject: its pool (the provider's parent) plus it."""
    pool = provider.rsplit("/providers/", 1)[0]
    return f"principal://iam.googleapis.com/{pool}/subject/{subject}"


def google_status(answer: Answer) -> str:
    """Google's canonical error status (``PERMISSION_DENIED``...), empty when there is none."""
    error = answer.body.get("error")
    return str(error.get("status") or "") if isinstance(error, dict) else ""


def exchange_denied(answer: Answer, *, where: str, audience: str, identity: str) -> LoginDenied:
    """STS refused the projected token (OAuth ``invalid_grant``, ``invalid_target``...)."""
    return LoginDenied(
        f"{where} refused to exchange the projected token for provider {audience} "
        f"({reason(answer)}); the provider must trust the token's issuer, list its "
        f"audience among its allowed audiences and accept its subject: the token has "
        f"{identity}"
    )


def impersonation_denied(
    answer: Answer, *, where: str, principal: str, service_account: str
) -> LoginDenied:
    """IAM would not give the service account's token to the federated principal."""
    return LoginDenied(
        f"{where} refused {principal} a token of service account {service_account} "
        f"({reason(answer)}); grant it {WORKLOAD_IDENTITY_USER} on the service account "
        "(and check that the service account exists)"
    )


def read_failed(
    answer: Answer, *, where: str, principal: str, path: str, ref: GcpRef
) -> StoreError:
    """The typed error for a failed ``:access`` of ``ref`` (read as ``path``)."""
    detail = reason(answer)
    if answer.status == 401:
        return LoginRejected(f"{where} rejected the access token of {principal} ({detail})")
    if answer.status == 403:
        return PermissionDenied(
            f"{principal} may not access {ref.resource} ({path}) in {where} ({detail}); Google "
            "answers 403 both for a secret that does not exist and for a missing binding, so "
            f"check that the secret exists and that {principal} has {SECRET_ACCESSOR} on it"
        )
    if answer.status == 400 and google_status(answer) == "FAILED_PRECONDITION":
        return SecretNotFound(
            f"version {ref.version} of secret {ref.secret} in project {ref.project} "
            f"cannot be read in {where} ({detail}): it is disabled or destroyed; enable it "
            "or name another version"
        )
    if answer.status == 404 and not answer.is_json:
        return SecretNotFound(
            f"{where} has no API at the URL for {path} ({detail}): check "
            "endpoints.secretmanager, the base URL of the Secret Manager API"
        )
    if answer.status == 404:
        return SecretNotFound(f"nothing at {ref.resource} ({path}) in {where} ({detail})")
    return SecretNotFound(f"{where} cannot give {ref.resource} ({path}) ({detail})")
