"""The agent's configuration: the one contract between webhook and agent.

The webhook renders an :class:`AgentConfig` as JSON into the injected
containers' ``LATCHKEY_CONFIG``; a user running the agent without the webhook
writes the same JSON (or YAML) by hand. The store models are shared with the
webhook's admin config, so a store is described the same way on both sides.

This module holds models and their validation only: no I/O, no defaults that
depend on the environment. JSON keys are camelCase, as in Kubernetes manifests.
The models are msgspec structs, not pydantic ones: this module is on the start
path of every agent in every pod, and msgspec imports and builds them in a few
milliseconds and a few MiB where pydantic took ~100 ms and ~20 MiB (issue 13).
:func:`parse` is the one way in from untyped data; construction by keyword (the
webhook's) runs the same ``__post_init__`` checks but trusts the field types.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec

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
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
PemBundle = Annotated[str | None, msgspec.Meta(description="PEM CA certificates to trust")]
T = TypeVar("T")


def described(text: str) -> msgspec.Meta:
    """A field's description, for the contract's JSON schema."""
    return msgspec.Meta(description=text)


class ContractError(ValueError):
    """Data that is not the contract: the message names the field and what it should be."""


class FieldProblem(ValueError):
    """A model's own check failed on one of its fields (camelCase, as on the wire)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse(model: type[T], data: object, *, name: str = "config") -> T:
    """``data`` (JSON or YAML already loaded) as ``model``; ContractError otherwise,
    naming the bad field (``files.0.name``), or ``name`` for the whole object.

    Lax as YAML needs (``"300"`` reads as 300), strict about unknown keys."""
    try:
        return msgspec.convert(data, model, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        path = re.sub(r"\[(\d+)\]", r".\1", where.rstrip("`")).lstrip(".")
        field = ".".join(p for p in (path, getattr(exc.__cause__, "field", "")) if p)
        raise ContractError(f"{field or name}: {message}") from None


def as_dict(model: msgspec.Struct) -> dict[str, Any]:
    """A model as JSON-ready data, camelCase keys, unset (None) fields left out."""
    return _without_none(msgspec.to_builtins(model))  # type: ignore[no-any-return]


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return value


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


def _file_name(value: str, field: str = "name") -> None:
    if not is_file_name(value):
        raise FieldProblem(
            field,
            f"{value!r} is not a file name: lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit",
        )


def _env_name(value: str) -> None:
    if not ENV_NAME_RE.fullmatch(value):
        raise FieldProblem(
            "name", f"{value!r} is not an environment variable name: [A-Za-z_][A-Za-z0-9_]*"
        )


def _file_mode(value: int) -> None:
    if not 0 <= value <= 0o777:
        raise FieldProblem("mode", f"file mode {value:o} is outside 0000-0777")


def _matching(field: str, value: str | None, pattern: str, what: str) -> None:
    """Say what a value should be, rather than the pattern it missed."""
    if value is not None and not re.fullmatch(pattern, value):
        raise FieldProblem(field, f"{value!r} is not {what}")


class Model(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Frozen, strict about unknown keys, camelCase on the wire."""


class Tagged(Model, frozen=True, kw_only=True):
    """A member of a union told apart by its ``kind`` key (msgspec's tag); ``kind``
    is also a class attribute, so a type checker narrows on ``store.kind == ...``."""


# --- stores: shared with the webhook's admin config -------------------------------------


class VaultAuth(Model, frozen=True, kw_only=True):
    """How the agent logs in to Vault/OpenBao: with the projected token (``jwt``,
    ``kubernetes``), or, for the standalone agent only, with a store token it is
    given (``token``: from ``tokenFile``, else ``$BAO_TOKEN`` or ``$VAULT_TOKEN``;
    never logged, never renewed or revoked: it is not the agent's)."""

    method: Literal["jwt", "kubernetes", "token"] = "jwt"
    mount: Annotated[str, described("auth mount path; empty means the method's name")] = ""
    audience: Annotated[str, described("audience of the projected token")] = ""
    token_file: Annotated[str | None, described("token method: file holding the store token")] = (
        None
    )

    def __post_init__(self) -> None:
        if self.method != "token" and not self.audience:
            raise ValueError(f"auth.audience is required for the {self.method} method")
        if self.method != "token" and self.token_file is not None:
            raise ValueError("auth.tokenFile is for the token method only")

    @property
    def mount_path(self) -> str:
        return (self.mount or self.method).strip("/")


class VaultStore(Tagged, tag="vault", tag_field="kind", frozen=True, kw_only=True):
    """Vault or OpenBao, over its HTTP API."""

    kind: ClassVar[Literal["vault"]] = "vault"

    address: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+(/.*)?$")]
    ca_bundle: PemBundle = None
    namespace: str = ""
    auth: VaultAuth


class AwsAuth(Model, frozen=True, kw_only=True):
    audience: str = "sts.amazonaws.com"


class AwsStore(Tagged, tag="aws", tag_field="kind", frozen=True, kw_only=True):
    """AWS Secrets Manager and SSM Parameter Store through web identity."""

    kind: ClassVar[Literal["aws"]] = "aws"

    region: NonEmpty
    role_arn: str | None = None
    endpoint_url: str | None = None
    auth: AwsAuth = msgspec.field(default_factory=AwsAuth)


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
VAULT_URL_RE = r"^https://[^\s/?#]+/?$"
HTTPS_BASE = "an https:// base URL"


class GcpEndpoints(Model, frozen=True, kw_only=True):
    """Base URLs of the three Google APIs the agent calls; unset means Google's own.
    For Private Service Connect endpoints, or a stand-in in tests."""

    sts: str | None = None
    iamcredentials: str | None = None
    secretmanager: str | None = None

    def __post_init__(self) -> None:
        for field in ("sts", "iamcredentials", "secretmanager"):
            _matching(field, getattr(self, field), HTTPS_BASE_RE, HTTPS_BASE)


class GcpAuth(Model, frozen=True, kw_only=True):
    audience: Annotated[
        str, described("empty: the provider's default, https://iam.googleapis.com/ + it")
    ] = ""


class GcpStore(Tagged, tag="gcp", tag_field="kind", frozen=True, kw_only=True):
    """Google Cloud Secret Manager through workload identity federation: the projected
    token is exchanged at Google's STS, then optionally for a service account's token."""

    kind: ClassVar[Literal["gcp"]] = "gcp"

    project: str | None = None
    workload_identity_provider: str
    service_account: str | None = None
    endpoints: GcpEndpoints = msgspec.field(default_factory=GcpEndpoints)
    ca_bundle: PemBundle = None
    auth: GcpAuth = msgspec.field(default_factory=GcpAuth)

    def __post_init__(self) -> None:
        _matching("project", self.project, GCP_PROJECT_RE, "a project id (6-30 a-z0-9-) or number")
        _matching(
            "workloadIdentityProvider",
            self.workload_identity_provider,
            GCP_PROVIDER_RE,
            "a workload identity provider: projects/PROJECT_NUMBER/locations/global/"
            "workloadIdentityPools/POOL/providers/PROVIDER",
        )
        _matching(
            "serviceAccount",
            self.service_account,
            GCP_SERVICE_ACCOUNT_RE,
            "a service account email such as app@P.iam.gserviceaccount.com",
        )

    @property
    def audience(self) -> str:
        """The projected token's ``aud``: what the provider's allowed audiences hold."""
        return self.auth.audience or f"https://iam.googleapis.com/{self.workload_identity_provider}"


class AzureAuth(Model, frozen=True, kw_only=True):
    audience: str = "api://AzureADTokenExchange"


class AzureStore(Tagged, tag="azure", tag_field="kind", frozen=True, kw_only=True):
    """Azure Key Vault through Microsoft Entra workload identity: the projected token is
    the client assertion of an app registration or managed identity federated with it."""

    kind: ClassVar[Literal["azure"]] = "azure"

    vault_url: str
    tenant_id: str
    client_id: str
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: PemBundle = None
    auth: AzureAuth = msgspec.field(default_factory=AzureAuth)

    def __post_init__(self) -> None:
        _matching(
            "vaultUrl",
            self.vault_url,
            VAULT_URL_RE,
            "a vault URL such as https://NAME.vault.azure.net",
        )
        _matching(
            "tenantId", self.tenant_id, AZURE_TENANT_RE, "a tenant id (a GUID) or domain name"
        )
        _matching(
            "clientId",
            self.client_id,
            GUID_RE,
            "a GUID such as 11111111-2222-3333-4444-555555555555",
        )
        _matching("authorityHost", self.authority_host, HTTPS_BASE_RE, HTTPS_BASE)


AnyStore = VaultStore | AwsStore | GcpStore | AzureStore
StoreConfig = AnyStore  # told apart by ``kind``


def parse_store(data: object, *, name: str = "store") -> AnyStore:
    """One store (the admin's ``stores.NAME``), told apart by its ``kind``."""
    return parse(AnyStore, data, name=name)  # type: ignore[arg-type]  # a union, not a class


def store_audience(store: AnyStore) -> str:
    """The audience the projected token must carry for this store."""
    return store.audience if isinstance(store, GcpStore) else store.auth.audience


# --- what to fetch and where to put it ------------------------------------------------


class SecretFile(Model, frozen=True, kw_only=True):
    """One file under ``secretsDir``: a store path, optionally one field, rendered."""

    name: str
    path: NonEmpty
    key: str | None = None
    format: Annotated[
        Format | None,
        described("None: json, or raw when a key is selected or the value is not an object"),
    ] = None
    template: str | None = None
    mode: int = 0o400

    def __post_init__(self) -> None:
        _file_name(self.name)
        _file_mode(self.mode)


class SourceSecret(Model, frozen=True, kw_only=True):
    """A secret read only for templates (``source-<name>``): no file of its own."""

    name: str
    path: NonEmpty
    key: str | None = None

    def __post_init__(self) -> None:
        _file_name(self.name)


class RenderedFile(Model, frozen=True, kw_only=True):
    """A file rendered from a sandboxed Jinja2 template over several secrets
    (``jinja-<name>``); ``uses`` names the secrets (files or sources) it reads, as
    ``secrets.<name>``, and the file is rendered again when one of them changes."""

    name: str
    template: NonEmpty
    uses: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    mode: int = 0o400

    def __post_init__(self) -> None:
        _file_name(self.name)
        for name in self.uses:
            _file_name(name, "uses")
        _file_mode(self.mode)


class CertificateFile(Model, frozen=True, kw_only=True):
    """A certificate issued by a store write (``cert-<name>``: Vault/OpenBao
    ``pki/issue/<role>`` with ``params``), written as ``<name>.crt``, ``<name>.key``
    and ``<name>-ca.crt`` and issued again at 2/3 of its lifetime. Writes that need
    parameters are described here once; a store kind without them refuses it."""

    name: str
    path: NonEmpty
    params: dict[str, str] = msgspec.field(default_factory=dict)
    mode: int = 0o400

    def __post_init__(self) -> None:
        _file_name(self.name)
        _file_mode(self.mode)

    @property
    def key(self) -> str:
        """Where the agent keeps this certificate's answer: never a readable path."""
        return f"certificate:{self.name}"

    @property
    def files(self) -> tuple[str, str, str]:
        return f"{self.name}.crt", f"{self.name}.key", f"{self.name}-ca.crt"


class EnvSecret(Model, frozen=True, kw_only=True):
    """One environment variable of the app, set by the env wrapper at start."""

    name: str
    path: NonEmpty
    key: NonEmpty

    def __post_init__(self) -> None:
        _env_name(self.name)


class SignalAction(Tagged, tag="signal", tag_field="kind", frozen=True, kw_only=True):
    """Send a signal to the process of another container (shared PID namespace)."""

    kind: ClassVar[Literal["signal"]] = "signal"

    signal: Annotated[str, msgspec.Meta(pattern=r"^SIG[A-Z0-9]+$")]
    container: NonEmpty


class HttpAction(Tagged, tag="http", tag_field="kind", frozen=True, kw_only=True):
    """POST to a localhost URL after a change."""

    kind: ClassVar[Literal["http"]] = "http"

    url: Annotated[str, msgspec.Meta(pattern=r"^http://(localhost|127\.0\.0\.1):\d{1,5}(/.*)?$")]


OnChange = SignalAction | HttpAction


class AgentConfig(Model, frozen=True, kw_only=True):
    """Everything one agent run needs. Version bumps mark incompatible changes."""

    version: Literal[1] = CONFIG_VERSION
    store: StoreConfig
    role: Annotated[
        str,
        described(
            "store role (Vault), role ARN (AWS), service account to impersonate (GCP; none: "
            "the federated principal), client id (Azure; none: the store's); none with token auth"
        ),
    ] = ""
    token_path: str = str(TOKEN_PATH)
    secrets_dir: str = str(DEFAULT_MOUNT_PATH)
    state_dir: str = str(STATE_DIR)
    files: tuple[SecretFile, ...] = ()
    sources: tuple[SourceSecret, ...] = ()
    renders: tuple[RenderedFile, ...] = ()
    certificates: tuple[CertificateFile, ...] = ()
    env: tuple[EnvSecret, ...] = ()
    env_file: Annotated[
        str | None, described("where the env wrapper reads the env- values from")
    ] = None
    wrapper_dir: Annotated[
        str | None, described("where the agent installs the static env wrapper")
    ] = None
    refresh_seconds: Annotated[
        int, msgspec.Meta(ge=MIN_REFRESH_SECONDS, le=MAX_REFRESH_SECONDS)
    ] = 300
    on_change: tuple[OnChange, ...] = ()

    def __post_init__(self) -> None:
        if self.renders:  # most configs have none, and nothing to check without one
            files = {f.name for f in self.files}
            declared = files | {s.name for s in self.sources}
            for render in self.renders:
                if missing := sorted(set(render.uses) - declared):
                    raise ValueError(f"renders.{render.name} uses undeclared {', '.join(missing)}")
            if clash := files & {r.name for r in self.renders}:
                raise ValueError(f"{', '.join(sorted(clash))}: both a file and a rendered file")
        token_auth = isinstance(self.store, VaultStore) and self.store.auth.method == "token"
        # gcp: no role reads as the federated principal; azure: the store's clientId.
        if not self.role and not token_auth and isinstance(self.store, VaultStore | AwsStore):
            raise ValueError("role is required (the store role, or the role ARN for AWS)")

    def to_json(self) -> str:
        """The compact JSON that travels in ``LATCHKEY_CONFIG`` (template-only secrets
        and rendered files left out when a pod has none)."""
        data = as_dict(self)
        for name in ("sources", "renders", "certificates"):
            if not data[name]:
                del data[name]
        return msgspec.json.encode(data).decode()


# The webhook mounts an empty volume at SIGNAL_MARK_DIR/<container> in each container
# named as an ``on-change`` signal target; the agent finds that container's processes
# by this mount point in /proc/*/mountinfo, which any uid may read whatever the app's
# gid and groups (/proc/*/environ needs the same uid *and* gid), and which no other
# container can fake without the privilege to mount.
SIGNAL_MARK_DIR = PurePosixPath("/var/run/latchkey.dev/signal-target")
CONFIG_ENV = "LATCHKEY_CONFIG"
