"""Parse an ``azure`` store path into the Key Vault secret to get: pure, no I/O.

The form (SPEC: paths), with the ``#key`` already split off by the agent:
``NAME`` (the current version) or ``NAME/VERSION``. Anything else is a
:class:`~sidecar.errors.ConfigError` that names the path and says what is valid,
before any request is made.
"""

from __future__ import annotations

import re

import msgspec

from sidecar.errors import ConfigError

FORMS = "NAME or NAME/VERSION (NAME: 1 to 127 letters, digits and '-'; VERSION: 32 hex digits)"

# Key Vault's own rules for object names and version ids.
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9a-fA-F]{32}")


class AzureRef(msgspec.Struct, frozen=True):
    """One Key Vault secret; ``version`` None means its current version."""

    name: str
    version: str | None = None

    @property
    def url_path(self) -> str:
        return f"secrets/{self.name}" + (f"/{self.version}" if self.version else "")


def parse_path(path: str) -> AzureRef:
    """What ``path`` names, or a ConfigError naming it and the valid form."""
    name, sep, version = path.partition("/")
    if not _NAME.fullmatch(name):
        raise _invalid(path, "the secret name is empty or has characters Key Vault does not allow")
    if sep and not _VERSION.fullmatch(version):
        raise _invalid(path, "a version is 32 hex digits, as Key Vault shows it")
    return AzureRef(name, version or None)


def _invalid(path: str, why: str) -> ConfigError:
    return ConfigError(f"azure store path {path!r} is not valid: {why}; valid forms: {FORMS}")
