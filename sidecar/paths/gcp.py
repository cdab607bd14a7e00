"""Parse a ``gcp`` store path into the secret version to access: pure, no I/O.

The forms (SPEC: paths), with the ``#key`` already split off by the agent:

- ``NAME`` or ``NAME@VERSION``, in the store's ``project``; ``VERSION`` is
  ``latest`` (the default), a version number or a version alias;
- ``projects/PROJECT/secrets/NAME/versions/VERSION``, Secret Manager's own name.

Anything else is a :class:`~sidecar.errors.ConfigError` that names the path and
lists these forms, before any request is made.
"""

from __future__ import annotations

import re

import msgspec

from sidecar.errors import ConfigError

FORMS = (
    "NAME, NAME@VERSION (VERSION: latest, a number or an alias) or "
    "projects/PROJECT/secrets/NAME/versions/VERSION"
)

# Secret Manager's own rules: secret ids, project ids or numbers, versions and aliases.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,255}")
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|\d{1,20}")
_VERSION = re.compile(r"latest|[1-9]\d{0,18}|[A-Za-z][A-Za-z0-9_-]{0,62}")
_FULL = re.compile(r"projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)")


class GcpRef(msgspec.Struct, frozen=True):
    """One secret version, by its project, secret id and version (or alias)."""

    project: str
    secret: str
    version: str = "latest"

    @property
    def resource(self) -> str:
        return f"projects/{self.project}/secrets/{self.secret}/versions/{self.version}"


def parse_path(path: str, *, project: str | None) -> GcpRef:
    """What ``path`` names (short names in ``project``), or a ConfigError naming it."""
    if full := _FULL.fullmatch(path):
        ref = GcpRef(*full.groups())
        if not _PROJECT.fullmatch(ref.project):
            raise _invalid(path, "the project is not a project id or number")
    else:
        if "/" in path:
            raise _invalid(path, "a '/' is only valid in the full projects/... form")
        name, _, version = path.partition("@")
        if project is None:
            raise _invalid(path, "the store has no project: give the full name, or set its project")
        ref = GcpRef(project, name, version if "@" in path else "latest")
    if not _NAME.fullmatch(ref.secret):
        raise _invalid(path, "a secret name is 1 to 255 letters, digits, '-' and '_'")
    if not _VERSION.fullmatch(ref.version):
        raise _invalid(path, "a version is latest, a number from 1, or an alias")
    return ref


def _invalid(path: str, why: str) -> ConfigError:
    return ConfigError(f"gcp store path {path!r} is not valid: {why}; valid forms: {FORMS}")
