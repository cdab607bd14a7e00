"""A credential configuration file as a ``gcp`` store: pure, no I/O.

``gcloud iam workload-identity-pools create-cred-config`` writes a JSON file that
Google's client libraries read to log in through workload identity federation.
The standalone agent takes that file (``--gcp-credential-config FILE``) instead of
a store config: it names the provider, the token file and the service account to
impersonate. The file is checked as strictly as External Secrets checks one, since
whoever can write it would otherwise choose where the projected token is sent:

- ``type`` is ``external_account``; ``audience`` names a workload identity provider;
- ``subject_token_type`` is a JWT or an OIDC ID token;
- ``token_url`` and ``service_account_impersonation_url`` are Google's (or the admin's
  configured ``endpoints``): the token is never sent anywhere else;
- ``credential_source`` is a ``file`` read as ``text``. ``executable`` would run a program
  the file names, ``url`` would fetch the token from a server it names,
  ``environment_id`` is AWS's and Azure's metadata: all refused. A ``json`` format is
  refused too: the kubelet writes the projected token as plain text.

Every refusal is a :class:`~sidecar.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from sidecar.config import GCP_SERVICE_ACCOUNT_RE, GcpEndpoints, GcpStore
from sidecar.errors import ConfigError

GOOGLE_STS = "https://sts.googleapis.com"
GOOGLE_IAM = "https://iamcredentials.googleapis.com"
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
)
_AUDIENCE = re.compile(
    r"//iam\.googleapis\.com/(projects/\d{1,20}/locations/global/workloadIdentityPools/"
    r"[a-z0-9-]{4,32}/providers/[a-z0-9-]{4,32})"
)
_IMPERSONATION = re.compile(r"/v1/projects/-/serviceAccounts/([^/:]+):generateAccessToken")
# Keys gcloud writes that change nothing here: token_info_url is for introspection only.
KNOWN = frozenset({
    "type", "audience", "subject_token_type", "token_url", "credential_source",
    "service_account_impersonation_url", "universe_domain", "token_info_url",
    "quota_project_id",
})  # fmt: skip
REFUSED_SOURCES = {
    "executable": "it would run a program the file names",
    "url": "it would fetch the token from a server the file names",
    "environment_id": "it reads AWS or Azure instance metadata, not a projected token",
    "certificate": "it is for X.509 workload identity, not a projected token",
}


class CredentialConfig(msgspec.Struct, frozen=True):
    """What a credential configuration file says: the store, the token file, and the
    service account to impersonate (the agent's ``role``; empty for none)."""

    store: GcpStore
    token_path: str

    @property
    def role(self) -> str:
        return self.store.service_account or ""


def from_credential_config(
    info: Mapping[str, Any],
    *,
    project: str | None = None,
    endpoints: GcpEndpoints | None = None,
    ca_bundle: str | None = None,
) -> CredentialConfig:
    """The ``gcp`` store a parsed credential configuration describes; ``endpoints`` are
    the admin's own base URLs, the only ones besides Google's that its URLs may name."""
    endpoints = endpoints or GcpEndpoints()
    if unknown := sorted(set(info) - KNOWN):
        raise _refused(", ".join(unknown), "is not supported by the agent; remove it")
    if info.get("type") != "external_account":
        raise _refused("type", "must be external_account (workload identity federation)")
    if info.get("universe_domain", "googleapis.com") != "googleapis.com":
        raise _refused("universe_domain", "must be googleapis.com")
    provider = _provider(info.get("audience"))
    if info.get("subject_token_type") not in SUBJECT_TOKEN_TYPES:
        raise _refused("subject_token_type", f"must be one of {', '.join(SUBJECT_TOKEN_TYPES)}")
    sts = endpoints.sts or GOOGLE_STS
    if info.get("token_url") != f"{sts.rstrip('/')}/v1/token":
        raise _refused("token_url", f"must be {sts.rstrip('/')}/v1/token")
    role = _impersonated(info.get("service_account_impersonation_url"), endpoints)
    token_path = _token_file(info.get("credential_source"))
    try:
        store = GcpStore(
            project=project, workload_identity_provider=provider,
            service_account=role or None, endpoints=endpoints, ca_bundle=ca_bundle,
        )  # fmt: skip
    except ValueError as exc:  # a model's own check, such as --gcp-project's form
        raise ConfigError(f"gcp credential configuration: {exc}") from None
    return CredentialConfig(store, token_path)


def _refused(field: str, why: str) -> ConfigError:
    return ConfigError(f"gcp credential configuration: {field} {why}")


def _provider(audience: object) -> str:
    match = _AUDIENCE.fullmatch(audience) if isinstance(audience, str) else None
    if match is None:
        raise _refused(
            "audience", "must be //iam.googleapis.com/projects/NUMBER/locations/global/"
            "workloadIdentityPools/POOL/providers/PROVIDER",
        )  # fmt: skip
    return match[1]


def _impersonated(url: object, endpoints: GcpEndpoints) -> str:
    """The service account the URL impersonates; empty when there is no URL."""
    if url is None:
        return ""
    base = (endpoints.iamcredentials or GOOGLE_IAM).rstrip("/")
    form = f"{base}/v1/projects/-/serviceAccounts/EMAIL:generateAccessToken"
    path = url.removeprefix(base) if isinstance(url, str) and url.startswith(base) else ""
    match = _IMPERSONATION.fullmatch(path)
    if match is None:
        raise _refused("service_account_impersonation_url", f"must be {form}")
    if not re.fullmatch(GCP_SERVICE_ACCOUNT_RE, match[1]):
        raise _refused("service_account_impersonation_url", "does not name a service account")
    return match[1]


def _token_file(source: object) -> str:
    if not isinstance(source, Mapping):
        raise _refused("credential_source", "must be an object with a file")
    for kind, why in REFUSED_SOURCES.items():
        if kind in source:
            raise _refused(f"credential_source.{kind}", f"is refused: {why}; use a file")
    if unknown := sorted(set(source) - {"file", "format"}):
        raise _refused(f"credential_source.{', '.join(unknown)}", "is not supported")
    path = source.get("file")
    if not isinstance(path, str) or not path:
        raise _refused("credential_source.file", "must name the projected token file")
    if source.get("format", {"type": "text"}) != {"type": "text"}:
        raise _refused(
            "credential_source.format", "must be text (or absent): the projected token "
            "file holds the token itself, not JSON",
        )  # fmt: skip
    return path
