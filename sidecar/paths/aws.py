"""Parse an ``aws`` store path into what to ask AWS for: pure, no botocore.

The forms (SPEC: paths), with the ``#key`` already split off by the agent:

- ``secretsmanager:NAME_OR_ARN``, optionally ``?version-stage=STAGE`` or
  ``?version-id=ID`` (one of them: AWS answers for one version);
- ``ssm:/path/name``, one parameter;
- ``ssm:/path/prefix/*``, every parameter directly under the prefix.

Anything else is a :class:`~sidecar.errors.ConfigError` that names the path and
lists these forms, before any request is made.
"""

from __future__ import annotations

import re

import msgspec

from sidecar.errors import ConfigError

FORMS = (
    "secretsmanager:NAME_OR_ARN[?version-stage=STAGE|?version-id=ID], "
    "ssm:/path/name or ssm:/path/prefix/*"
)

# Secret names allow these characters; an ARN adds ':' (arn:aws:secretsmanager:...).
_SECRET_ID = re.compile(r"[A-Za-z0-9/_+=.@:-]{1,2048}")
_STAGE = re.compile(r"[A-Za-z0-9/_+=.@-]{1,256}")
_VERSION_ID = re.compile(r"[A-Za-z0-9-]{32,64}")
# An SSM name: hierarchical ('/'-separated segments, no empty one) or flat.
_PARAMETER = re.compile(r"(/[A-Za-z0-9_.-]+)+|[A-Za-z0-9_.-]+")
_PREFIX = re.compile(r"(/[A-Za-z0-9_.-]+)*/\*")


class SecretRef(msgspec.Struct, frozen=True):
    """One Secrets Manager secret, at most one of stage or version id set."""

    secret_id: str
    version_stage: str | None = None
    version_id: str | None = None


class ParameterRef(msgspec.Struct, frozen=True):
    """One SSM parameter by its full name."""

    name: str


class ParameterPrefix(msgspec.Struct, frozen=True):
    """Every SSM parameter directly under ``path`` (no trailing slash; ``/`` for the root)."""

    path: str


AwsRef = SecretRef | ParameterRef | ParameterPrefix


def parse_path(path: str) -> AwsRef:
    """What ``path`` names, or a ConfigError naming it and the valid forms."""
    scheme, sep, rest = path.partition(":")
    if sep and scheme == "secretsmanager":
        return _secret(path, rest)
    if sep and scheme == "ssm":
        return _parameter(path, rest)
    raise _invalid(path, "it starts with neither 'secretsmanager:' nor 'ssm:'")


def _secret(path: str, rest: str) -> SecretRef:
    secret_id, sep, query = rest.partition("?")
    if not _SECRET_ID.fullmatch(secret_id):
        raise _invalid(path, "the secret name or ARN is empty or has characters AWS does not allow")
    if not sep:
        return SecretRef(secret_id)
    key, eq, value = query.partition("=")
    if "&" in query:
        raise _invalid(path, "give one option, version-stage or version-id, not both")
    if not eq or key not in ("version-stage", "version-id"):
        raise _invalid(path, "the only options are ?version-stage=STAGE and ?version-id=ID")
    if key == "version-stage":
        if not _STAGE.fullmatch(value):
            raise _invalid(path, "the version stage is empty or has characters AWS does not allow")
        return SecretRef(secret_id, version_stage=value)
    if not _VERSION_ID.fullmatch(value):
        raise _invalid(path, "a version id is 32 to 64 letters, digits and '-'")
    return SecretRef(secret_id, version_id=value)


def _parameter(path: str, name: str) -> ParameterRef | ParameterPrefix:
    if _PREFIX.fullmatch(name):
        return ParameterPrefix(name[:-2] or "/")
    if _PARAMETER.fullmatch(name) and len(name) <= 2048:
        return ParameterRef(name)
    raise _invalid(
        path,
        "an SSM name is /segments/of/letters-digits_. (no empty segment) or one such segment; "
        "'*' may only be the whole last segment",
    )


def _invalid(path: str, why: str) -> ConfigError:
    return ConfigError(f"aws store path {path!r} is not valid: {why}; valid forms: {FORMS}")
