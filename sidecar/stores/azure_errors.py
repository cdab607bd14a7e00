"""Microsoft Entra and Key Vault error answers to the agent's typed errors: pure, no I/O.

:mod:`sidecar.stores.azure` hands over the :class:`~sidecar.stores.cloud_http.Answer`
and what it knows (client id, tenant, the projected token's issuer, subject and
audience, the secret); this module says what a platform engineer has to change.
Entra names its errors by ``AADSTS`` number, Key Vault by ``error.code`` and
``error.innererror.code``; neither ever echoes a secret value or a token, so their
text is kept (short, on one line) after ours.
"""

from __future__ import annotations

import re

from sidecar.auth import identity as token_identity
from sidecar.auth import token_claims
from sidecar.errors import LoginDenied, PermissionDenied, SecretNotFound, StoreError
from sidecar.paths.azure import AzureRef
from sidecar.stores.cloud_http import Answer, reason
from sidecar.stores.schedule import LoginRejected

# No federated identity credential matches the assertion: as a whole, or by issuer,
# audience or subject.
NO_FEDERATED_MATCH = frozenset({70021, 700211, 700212, 700213})
APP_NOT_FOUND = 700016
TENANT_NOT_FOUND = 90002
# The assertion is expired or not yet valid (700024), or malformed (50027).
BAD_ASSERTION = frozenset({700024, 50027})
AZURE_AUDIENCE = "api://AzureADTokenExchange"  # what Azure's federated credentials expect
ROLE_HOWTO = (
    "az role assignment create --role 'Key Vault Secrets User' --assignee {principal} "
    "--scope <vault or secret resource id>"
)
POLICY_HOWTO = "az keyvault set-policy --name <vault> --spn {principal} --secret-permissions get"


def entra_code(answer: Answer) -> int | None:
    """The ``AADSTS`` number of an Entra error: ``error_codes[0]``, else from its text."""
    codes = answer.body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return codes[0]
    found = re.search(r"AADSTS(\d+)", str(answer.body.get("error_description", "")))
    return int(found.group(1)) if found else None


def login_denied(
    answer: Answer, *, where: str, client_id: str, tenant: str, projected: str
) -> LoginDenied:
    """Why Entra would not give client ``client_id`` a token for the ``projected`` token
    (whose issuer, subject and audience are named, never the token itself)."""
    code, why, identity = entra_code(answer), reason(answer), token_identity(projected)
    if code in NO_FEDERATED_MATCH:
        return LoginDenied(
            f"{where}: no federated identity credential of client {client_id} in tenant "
            f"{tenant} matches the projected token ({identity}); add one with exactly that "
            f"issuer, subject and audience ({_federate(projected)}), or set the store's "
            f"auth.audience to the credential's (Azure's is {AZURE_AUDIENCE}) ({why})"
        )
    if code == APP_NOT_FOUND:
        return LoginDenied(
            f"{where}: no application or managed identity with client id {client_id} in "
            f"tenant {tenant}; check the store's clientId (or the pod's latchkey.dev/role) "
            f"and tenantId ({why})"
        )
    if code == TENANT_NOT_FOUND:
        return LoginDenied(
            f"{where}: no tenant {tenant}; check the store's tenantId, and authorityHost "
            f"for a sovereign cloud ({why})"
        )
    if code in BAD_ASSERTION:
        return LoginDenied(
            f"{where} refused the projected token ({identity}) as client assertion of "
            f"client {client_id}: it is malformed, expired or not yet valid (check the "
            f"node's clock and the token's expirationSeconds) ({why})"
        )
    return LoginDenied(
        f"{where} denied client {client_id} in tenant {tenant} a token for the projected "
        f"token ({identity}) ({why})"
    )


def _federate(projected: str) -> str:
    """The ``az`` command that makes the missing credential, for a managed identity."""
    claims = token_claims(projected)
    aud = claims.get("aud")
    audience = aud[0] if isinstance(aud, list) and aud else aud
    return (
        "az identity federated-credential create --name <name> --identity-name <identity> "
        f"--resource-group <group> --issuer {claims.get('iss', '?')} "
        f"--subject {claims.get('sub', '?')} --audiences {audience or '?'}"
    )


def _what(ref: AzureRef) -> str:
    if ref.version:
        return f"version {ref.version} of secret {ref.name}"
    return f"the current version of secret {ref.name}"


def read_denied(answer: Answer, *, where: str, principal: str, ref: AzureRef) -> StoreError:
    """The typed error for a Key Vault answer other than 200 to getting ``ref``."""
    error = answer.body.get("error")
    error = error if isinstance(error, dict) else {}
    inner = error.get("innererror")
    inner_code = inner.get("code") if isinstance(inner, dict) else None
    why = reason(answer) + (f" ({inner_code})" if inner_code else "")
    if answer.status == 401:
        return LoginRejected(
            f"{where} rejected the access token of client {principal} getting {_what(ref)} ({why})"
        )
    if answer.status == 403 and inner_code == "SecretDisabled":
        return SecretNotFound(
            f"{_what(ref)} in {where} is disabled: enable it (az keyvault secret "
            f"set-attributes --enabled true) or name an enabled version ({why})"
        )
    if answer.status == 403:
        return PermissionDenied(_forbidden(where, principal, ref, inner_code, why))
    if answer.status == 404 and not answer.is_json:
        return SecretNotFound(
            f"nothing at secret {ref.name} in {where}: {why}; is vaultUrl a Key Vault?"
        )
    if answer.status == 404:
        missing = f"version {ref.version} of secret" if ref.version else "secret"
        return SecretNotFound(f"no {missing} {ref.name} in {where} ({why})")
    return SecretNotFound(f"{where} cannot give {_what(ref)} ({why})")


def _forbidden(where: str, principal: str, ref: AzureRef, inner_code: str | None, why: str) -> str:
    denied = f"client {principal} may not get secret {ref.name} in {where}"
    if inner_code == "ForbiddenByFirewall":
        return (
            f"{denied}: the vault's firewall refuses the agent's address; allow it, or "
            f"reach the vault through a private endpoint ({why})"
        )
    rbac = ROLE_HOWTO.format(principal=principal)
    policy = POLICY_HOWTO.format(principal=principal)
    if inner_code == "ForbiddenByRbac":
        fix = f"assign it the Key Vault Secrets User role on the vault or the secret ({rbac})"
    elif inner_code == "AccessDenied":
        fix = f"the vault uses access policies: grant it secrets get ({policy})"
    else:
        fix = f"assign it the Key Vault Secrets User role ({rbac}), or grant secrets get ({policy})"
    return f"{denied}: {fix} ({why})"
