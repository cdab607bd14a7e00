"""The webhook's settings: the admin's config file plus process flags.

Loaded once in ``__main__`` and passed down; nothing else reads the environment.
The store models come from :mod:`sidecar.config`, so a store reads the same in
the admin's YAML and in the agent's ``LATCHKEY_CONFIG``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from sidecar.config import (
    DEFAULT_MOUNT_PATH,
    AnyStore,
    ContractError,
    Tagged,
    as_dict,
    parse_store,
)
from webhook import values
from webhook.errors import ConfigError


class Model(BaseModel):
    """Frozen, strict about unknown keys, camelCase in the YAML, as the agent's contract."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


def _store(value: object) -> AnyStore:
    """A store of the agent's contract (:mod:`sidecar.config`), checked by its own rules."""
    if isinstance(value, Tagged):
        return value  # type: ignore[return-value]  # built in code, already checked
    try:
        return parse_store(value, name="store")
    except ContractError as exc:
        raise ValueError(str(exc)) from None


StoreConfig = Annotated[
    AnyStore,
    PlainValidator(_store),
    PlainSerializer(as_dict),
    WithJsonSchema({"type": "object", "description": "a store of sidecar.config"}),
]


def _duration(value: str) -> str:
    values.refresh(value)
    return value


# The admin's values pass the same checks as a pod's annotations (webhook.values).
Quantity = Annotated[str, AfterValidator(values.quantity)]
Duration = Annotated[str, AfterValidator(_duration)]
MountPath = Annotated[str, AfterValidator(values.mount_path)]


class ResourceList(Model):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class Resources(Model):
    requests: ResourceList = ResourceList(cpu="10m", memory="24Mi")
    limits: ResourceList = ResourceList(memory="64Mi")


class AgentSettings(Model):
    """How the injected agent containers look."""

    image: str = "latchkey-sidecar:0.1.0"
    image_pull_policy: str = Field(default="IfNotPresent", pattern="^(Always|IfNotPresent|Never)$")
    resources: Resources = Resources()
    native_sidecar: bool = True
    token_expiration_seconds: int = Field(default=600, ge=600, le=86400)
    secrets_size_limit: Quantity = "4Mi"
    run_as_user: int = Field(default=65532, ge=1, description="uid when the app's is unknown")


class Defaults(Model):
    mount_path: MountPath = str(DEFAULT_MOUNT_PATH)
    refresh: Duration = "5m"


class GuardSettings(Model):
    """What may reach an injected pod's volumes after admission (webhook.guard)."""

    debug_may_mount_secrets: bool = Field(
        default=False,
        description="let ephemeral (debug) containers mount the secrets, read-only",
    )


class WebhookConfig(Model):
    """The admin's YAML config file."""

    stores: dict[str, StoreConfig] = Field(min_length=1)
    agent: AgentSettings = AgentSettings()
    defaults: Defaults = Defaults()
    guard: GuardSettings = GuardSettings()

    @model_validator(mode="after")
    def _pods_use_their_own_token(self) -> WebhookConfig:
        for name, store in self.stores.items():
            if store.kind == "vault" and store.auth.method == "token":
                raise ValueError(
                    f"stores.{name}.auth.method: token is for the standalone agent only; "
                    "pods log in with their own service-account token (jwt or kubernetes)"
                )
        return self


def registry_warning(config: WebhookConfig) -> str | None:
    """A warning when ``agent.image`` names no registry: nodes would pull it from Docker
    Hub, where Latchkey's image is not, and only the app pods would find out."""
    image = config.agent.image
    first = image.split("/")[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return None
    return (
        f"agent.image {image} names no registry, so nodes would pull it from Docker Hub "
        f"(docker.io/{'library/' if '/' not in image else ''}{image}); set agent.image in the "
        "config to the image you pushed, such as registry.example/latchkey-sidecar:0.1.0"
    )


def load_config(path: Path) -> WebhookConfig:
    """Read and validate the admin's config file; ConfigError says what is wrong."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    try:
        return WebhookConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {path}: {exc}") from exc
