"""The agent's configuration: the one contract between webhook and agent.

The webhook renders an :class:`AgentConfig` as JSON into the injected
containers' ``LATCHKEY_CONFIG``; a user running the agent without the webhook
writes the same JSON (or YAML) by hand. The store models are shared with the
webhook's admin config, so a store is described the same way on both sides.

This module holds models and their validation only: no I/O, no defaults that
depend on the environment. JSON keys are camelCase, as in Kubernetes manifests.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

CONFIG_VERSION: Literal[1] = 1

TOKEN_DIR = PurePosixPath("/var/run/secrets/latchkey.dev/serviceaccount")
TOKEN_PATH = TOKEN_DIR / "token"
STATE_DIR = PurePosixPath("/var/run/latchkey.dev/state")
BIN_DIR = PurePosixPath("/var/run/latchkey.dev/bin")
WRAPPER_NAME = "latchkey-env"
ENV_FILE_NAME = "env"
DEFAULT_MOUNT_PATH = PurePosixPath("/latchkey/secrets")

# A file name: a DNS-1123 label that may also hold dots (SPEC: "file-name rules").
FILE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS = 1, 24 * 3600
DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")

Format = Literal["json", "yaml", "env", "dotenv", "raw"]


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``30s``, ``5m``, ``1h30m``; ValueError otherwise.

    The one parser for ``latchkey.dev/refresh``, the admin's ``defaults.refresh``
    and the agent's ``--refresh``, so all three accept the same text.
    """
    match = DURATION_RE.fullmatch(text)
    if not text or not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def is_file_name(value: str) -> bool:
    """A DNS-1123 label that may hold dots, but never ``..``: safe as one path segment."""
    return bool(FILE_NAME_RE.fullmatch(value)) and ".." not in value


def _file_name(value: str) -> str:
    if not is_file_name(value):
        raise ValueError(
            f"{value!r} is not a file name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit"
        )
    return value


def _env_name(value: str) -> str:
    if not ENV_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an environment variable name: [A-Za-z_][A-Za-z0-9_]*")
    return value


def _file_mode(value: int) -> int:
    if not 0 <= value <= 0o777:
        raise ValueError(f"file mode {value:o} is outside 0000-0777")
    return value


FileName = Annotated[str, AfterValidator(_file_name)]
EnvName = Annotated[str, AfterValidator(_env_name)]
FileMode = Annotated[int, AfterValidator(_file_mode)]


class Model(BaseModel):
    """Frozen, strict about unknown keys, camelCase on the wire."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


# --- stores: shared with the webhook's admin config -------------------------------------


class VaultAuth(Model):
    """How the agent logs in to Vault/OpenBao: with the projected token (``jwt``,
    ``kubernetes``), or, for the standalone agent only, with a store token it is
    given (``token``: from ``tokenFile``, else ``$BAO_TOKEN`` or ``$VAULT_TOKEN``;
    never logged, never renewed or revoked: it is not the agent's)."""

    method: Literal["jwt", "kubernetes", "token"] = "jwt"
    mount: str = Field(default="", description="auth mount path; empty means the method's name")
    audience: str = Field(default="", description="audience of the projected token")
    token_file: str | None = Field(
        default=None, description="token method: file holding the store token"
    )

    @model_validator(mode="after")
    def _needs_audience(self) -> VaultAuth:
        if self.method != "token" and not self.audience:
            raise ValueError(f"auth.audience is required for the {self.method} method")
        if self.method != "token" and self.token_file is not None:
            raise ValueError("auth.tokenFile is for the token method only")
        return self

    @property
    def mount_path(self) -> str:
        return (self.mount or self.method).strip("/")


class VaultStore(Model):
    """Vault or OpenBao, over its HTTP API."""

    kind: Literal["vault"] = "vault"
    address: str = Field(pattern=r"^https?://[^\s/]+(/.*)?$")
    ca_bundle: str | None = Field(default=None, description="PEM CA certificates to trust")
    namespace: str = ""
    auth: VaultAuth


class AwsAuth(Model):
    audience: str = "sts.amazonaws.com"


class AwsStore(Model):
    """AWS Secrets Manager and SSM Parameter Store through web identity."""

    kind: Literal["aws"]
    region: str = Field(min_length=1)
    role_arn: str | None = None
    endpoint_url: str | None = None
    auth: AwsAuth = AwsAuth()


GCP_PROVIDER_RE = (
    r"^projects/\d{1,20}/locations/global/workloadIdentityPools/[a-z0-9-]{4,32}"
    r"/providers/[a-z0-9-]{4,32}$"
)
# A service account's email: user-managed (NAME@PROJECT.iam.gserviceaccount.com) or a
# Google-managed one (NUMBER-compute@developer.gserviceaccount.com).
GCP_SERVICE_ACCOUNT_RE = r"^[a-z0-9][a-z0-9.-]{0,62}@[a-z0-9.-]{1,100}\.gserviceaccount\.com$"
GCP_PROJECT_RE = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^\d{1,20}$"
GUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# A tenant is its GUID or one of its verified domain names.
AZURE_TENANT_RE = GUID_RE + r"|^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$"
HTTPS_BASE_RE = r"^https://[^\s/?#]+(/[^\s?#]*)?$"


def _matching(pattern: str, what: str) -> AfterValidator:
    """A validator that says what a value should be, rather than the pattern it missed."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


HttpsBase = Annotated[str, _matching(HTTPS_BASE_RE, "an https:// base URL")]
GcpProvider = Annotated[
    str,
    _matching(
        GCP_PROVIDER_RE,
        "a workload identity provider: projects/PROJECT_NUMBER/locations/global/"
        "workloadIdentityPools/POOL/providers/PROVIDER",
    ),
]
GcpServiceAccount = Annotated[
    str,
    _matching(
        GCP_SERVICE_ACCOUNT_RE, "a service account email such as app@P.iam.gserviceaccount.com"
    ),
]
GcpProject = Annotated[str, _matching(GCP_PROJECT_RE, "a project id (6-30 a-z0-9-) or number")]
Guid = Annotated[str, _matching(GUID_RE, "a GUID such as 11111111-2222-3333-4444-555555555555")]
AzureTenant = Annotated[str, _matching(AZURE_TENANT_RE, "a tenant id (a GUID) or domain name")]
VaultUrl = Annotated[
    str, _matching(r"^https://[^\s/?#]+/?$", "a vault URL such as https://NAME.vault.azure.net")
]


class GcpEndpoints(Model):
    """Base URLs of the three Google APIs the agent calls; unset means Google's own.
    For Private Service Connect endpoints, or a stand-in in tests."""

    sts: HttpsBase | None = None
    iamcredentials: HttpsBase | None = None
    secretmanager: HttpsBase | None = None


class GcpAuth(Model):
    audience: str = Field(
        default="", description="empty: the provider's default, https://iam.googleapis.com/ + it"
    )


class GcpStore(Model):
    """Google Cloud Secret Manager through workload identity federation: the projected
    token is exchanged at Google's STS, then optionally for a service account's token."""

    kind: Literal["gcp"]
    project: GcpProject | None = None
    workload_identity_provider: GcpProvider
    service_account: GcpServiceAccount | None = None
    endpoints: GcpEndpoints = GcpEndpoints()
    ca_bundle: str | None = Field(default=None, description="PEM CA certificates to trust")
    auth: GcpAuth = GcpAuth()

    @property
    def audience(self) -> str:
        """The projected token's ``aud``: what the provider's allowed audiences hold."""
        return self.auth.audience or f"https://iam.googleapis.com/{self.workload_identity_provider}"


class AzureAuth(Model):
    audience: str = "api://AzureADTokenExchange"


class AzureStore(Model):
    """Azure Key Vault through Microsoft Entra workload identity: the projected token is
    the client assertion of an app registration or managed identity federated with it."""

    kind: Literal["azure"]
    vault_url: VaultUrl
    tenant_id: AzureTenant
    client_id: Guid
    authority_host: HttpsBase = "https://login.microsoftonline.com"
    ca_bundle: str | None = Field(default=None, description="PEM CA certificates to trust")
    auth: AzureAuth = AzureAuth()


AnyStore = VaultStore | AwsStore | GcpStore | AzureStore
StoreConfig = Annotated[AnyStore, Field(discriminator="kind")]


def store_audience(store: AnyStore) -> str:
    """The audience the projected token must carry for this store."""
    return store.audience if isinstance(store, GcpStore) else store.auth.audience


# --- what to fetch and where to put it ------------------------------------------------


class SecretFile(Model):
    """One file under ``secretsDir``: a store path, optionally one field, rendered."""

    name: FileName
    path: str = Field(min_length=1)
    key: str | None = None
    format: Format | None = Field(
        default=None,
        description="None: json, or raw when a key is selected or the value is not an object",
    )
    template: str | None = None
    mode: FileMode = 0o400


class SourceSecret(Model):
    """A secret read only for templates (``source-<name>``): no file of its own."""

    name: FileName
    path: str = Field(min_length=1)
    key: str | None = None


class RenderedFile(Model):
    """A file rendered from a sandboxed Jinja2 template over several secrets
    (``jinja-<name>``); ``uses`` names the secrets (files or sources) it reads, as
    ``secrets.<name>``, and the file is rendered again when one of them changes."""

    name: FileName
    template: str = Field(min_length=1)
    uses: tuple[FileName, ...] = Field(min_length=1)
    mode: FileMode = 0o400


class CertificateFile(Model):
    """A certificate issued by a store write (``cert-<name>``: Vault/OpenBao
    ``pki/issue/<role>`` with ``params``), written as ``<name>.crt``, ``<name>.key``
    and ``<name>-ca.crt`` and issued again at 2/3 of its lifetime. Writes that need
    parameters are described here once; a store kind without them refuses it."""

    name: FileName
    path: str = Field(min_length=1)
    params: dict[str, str] = Field(default_factory=dict)
    mode: FileMode = 0o400

    @property
    def key(self) -> str:
        """Where the agent keeps this certificate's answer: never a readable path."""
        return f"certificate:{self.name}"

    @property
    def files(self) -> tuple[str, str, str]:
        return f"{self.name}.crt", f"{self.name}.key", f"{self.name}-ca.crt"


class EnvSecret(Model):
    """One environment variable of the app, set by the env wrapper at start."""

    name: EnvName
    path: str = Field(min_length=1)
    key: str = Field(min_length=1)


class SignalAction(Model):
    """Send a signal to the process of another container (shared PID namespace)."""

    kind: Literal["signal"] = "signal"
    signal: str = Field(pattern=r"^SIG[A-Z0-9]+$")
    container: str = Field(min_length=1)


class HttpAction(Model):
    """POST to a localhost URL after a change."""

    kind: Literal["http"] = "http"
    url: str = Field(pattern=r"^http://(localhost|127\.0\.0\.1):\d{1,5}(/.*)?$")


OnChange = Annotated[SignalAction | HttpAction, Field(discriminator="kind")]


class AgentConfig(Model):
    """Everything one agent run needs. Version bumps mark incompatible changes."""

    version: Literal[1] = CONFIG_VERSION
    store: StoreConfig
    role: str = Field(
        default="",
        description="store role (Vault), role ARN (AWS), service account to impersonate "
        "(GCP; none: the federated principal), client id (Azure; none: the store's); "
        "none with token auth",
    )
    token_path: str = str(TOKEN_PATH)
    secrets_dir: str = str(DEFAULT_MOUNT_PATH)
    state_dir: str = str(STATE_DIR)
    files: tuple[SecretFile, ...] = ()
    sources: tuple[SourceSecret, ...] = ()
    renders: tuple[RenderedFile, ...] = ()
    certificates: tuple[CertificateFile, ...] = ()
    env: tuple[EnvSecret, ...] = ()
    env_file: str | None = Field(
        default=None, description="where the env wrapper reads the env- values from"
    )
    wrapper_dir: str | None = Field(
        default=None, description="where the agent installs the static env wrapper"
    )
    refresh_seconds: int = Field(default=300, ge=MIN_REFRESH_SECONDS, le=MAX_REFRESH_SECONDS)
    on_change: tuple[OnChange, ...] = ()

    @model_validator(mode="after")
    def _renders_use_declared_secrets(self) -> AgentConfig:
        declared = {f.name for f in self.files} | {s.name for s in self.sources}
        for render in self.renders:
            if missing := sorted(set(render.uses) - declared):
                raise ValueError(f"renders.{render.name} uses undeclared {', '.join(missing)}")
        if clash := {f.name for f in self.files} & {r.name for r in self.renders}:
            raise ValueError(f"{', '.join(sorted(clash))}: both a file and a rendered file")
        return self

    @model_validator(mode="after")
    def _needs_role(self) -> AgentConfig:
        token_auth = self.store.kind == "vault" and self.store.auth.method == "token"
        # gcp: no role reads as the federated principal; azure: the store's clientId.
        if not self.role and not token_auth and self.store.kind in ("vault", "aws"):
            raise ValueError("role is required (the store role, or the role ARN for AWS)")
        return self

    def to_json(self) -> str:
        """The compact JSON that travels in ``LATCHKEY_CONFIG`` (template-only secrets
        and rendered files left out when a pod has none)."""
        empty = {n for n in ("sources", "renders", "certificates") if not getattr(self, n)}
        return self.model_dump_json(by_alias=True, exclude_none=True, exclude=empty)


# The webhook mounts an empty volume at SIGNAL_MARK_DIR/<container> in each container
# named as an ``on-change`` signal target; the agent finds that container's processes
# by this mount point in /proc/*/mountinfo, which any uid may read whatever the app's
# gid and groups (/proc/*/environ needs the same uid *and* gid), and which no other
# container can fake without the privilege to mount.
SIGNAL_MARK_DIR = PurePosixPath("/var/run/latchkey.dev/signal-target")
CONFIG_ENV = "LATCHKEY_CONFIG"
