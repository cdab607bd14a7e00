"""Turn a secret's fields into file bytes and env values: the agent's pure core.

This module does no I/O and keeps no state: :mod:`sidecar.writer` puts the bytes
on disk. Every error is a :class:`RenderError` that names the store path, the
field, the placeholder or the variable, and never a value, so it can be logged
as is. ``yaml`` is imported only when a yaml file is rendered, because the
agent's start time matters for pods waiting on their first write.
"""

from __future__ import annotations

import functools
import json
import string
from collections.abc import Callable, Mapping
from typing import Any

from sidecar.config import ENV_NAME_RE, EnvSecret, RenderedFile, SecretFile
from sidecar.errors import RenderError
from sidecar.stores.base import Secret

Fields = Mapping[str, Any]


def render_file(spec: SecretFile, secret: Secret) -> bytes:
    """The bytes of one secret file: its template if any, else its format."""
    fields = _selected(spec, secret)
    try:
        if spec.template is not None:
            return _template(spec.template, fields, path=secret.path).encode()
        fmt = spec.format or ("raw" if spec.key is not None or secret.scalar else "json")
        if fmt == "raw":
            return _raw(spec, secret)
        return _FORMATS[fmt](fields, secret.path)
    except UnicodeEncodeError:
        raise RenderError(
            f"file {spec.name}: {secret.path} holds text that is not valid Unicode"
        ) from None


def rendered_file(spec: RenderedFile, secrets: Mapping[str, tuple[Secret, str | None]]) -> bytes:
    """A ``jinja-`` file over the secrets it uses (name -> the secret and its field, if
    one is selected); Jinja2 is imported here, only by pods that have one."""
    fields = {}
    for name in spec.uses:
        secret, key = secrets[name]
        fields[name] = (
            dict(secret.fields)
            if key is None
            else {key: _field(secret, key, what=f"file {spec.name}")}
        )
    from sidecar.jinja import render

    return render(spec.name, spec.template, fields)


def env_value(spec: EnvSecret, secret: Secret) -> str:
    """The value of one ``env-`` variable: field ``spec.key`` as text."""
    value = _field(secret, spec.key, what=f"env {spec.name}")
    return _text(value, path=secret.path, field=spec.key)


def env_file(values: Mapping[str, str]) -> bytes:
    """``NAME=VALUE`` records each ended by NUL, as ``latchkey-env`` reads them.

    NUL ends a record, so values may hold newlines and ``=`` but not NUL, which
    no environment variable can hold anyway.
    """
    records = []
    for name, value in values.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise RenderError(f"env {name!r}: not an environment variable name")
        if "\0" in value:
            raise RenderError(f"env {name}: the value holds a NUL byte, which env cannot carry")
        try:
            records.append(f"{name}={value}".encode() + b"\0")
        except UnicodeEncodeError:
            raise RenderError(f"env {name}: the value is not valid Unicode") from None
    return b"".join(records)


# --- field selection and text conversion ----------------------------------------------


def _selected(spec: SecretFile, secret: Secret) -> Fields:
    """The map the format or template sees: every field, or ``{key: value}``."""
    if spec.key is None:
        return secret.fields
    return {spec.key: _field(secret, spec.key, what=f"file {spec.name}")}


def _field(secret: Secret, key: str, *, what: str) -> Any:
    """One field, or an error naming the path and the key and listing field names."""
    try:
        return secret.fields[key]
    except KeyError:
        names = ", ".join(sorted(secret.fields)) or "(none)"
        raise RenderError(
            f"{what}: {secret.path} has no field {key!r}; its fields are: {names}"
        ) from None


def _text(value: Any, *, path: str, field: str) -> str:
    """A field as text: strings as they are, UTF-8 bytes decoded, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise RenderError(
                f"{path}: field {field!r} is binary, not text; "
                "use the raw format with #key to write its bytes"
            ) from None
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except TypeError:
        raise RenderError(f"{path}: field {field!r} holds binary data inside a structure") from None


def _text_fields(fields: Fields, path: str) -> dict[str, str]:
    return {name: _text(value, path=path, field=name) for name, value in fields.items()}


# --- formats ------------------------------------------------------------------------


def _raw(spec: SecretFile, secret: Secret) -> bytes:
    """The exact bytes of the one selected (or scalar) value."""
    name = spec.key if spec.key is not None else "value" if secret.scalar else None
    if name is None:
        names = ", ".join(sorted(secret.fields)) or "(none)"
        raise RenderError(
            f"file {spec.name}: format raw needs one field ({secret.path}#key); "
            f"its fields are: {names}"
        )
    value = _field(secret, name, what=f"file {spec.name}")
    if isinstance(value, bytes):
        return value
    return _text(value, path=secret.path, field=name).encode()


def _json(fields: Fields, path: str) -> bytes:
    try:
        text = json.dumps(dict(fields), indent=2, ensure_ascii=False)
    except TypeError:
        raise RenderError(
            f"{path}: a field is binary and cannot be written as json; use the raw format with #key"
        ) from None
    return (text + "\n").encode()


def _yaml(fields: Fields, path: str) -> bytes:
    import yaml  # here, not at the top: only pods asking for yaml pay for the import

    try:
        text = yaml.dump(dict(fields), Dumper=_yaml_dumper(), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError:
        raise RenderError(f"{path}: a field cannot be written as yaml") from None
    return text.encode()


@functools.cache
def _yaml_dumper() -> type[Any]:
    """``SafeDumper`` that double-quotes strings holding NEL, LS or PS.

    With ``allow_unicode`` PyYAML writes those raw in plain or single-quoted
    scalars, where a reader folds them into spaces; double quotes escape them.
    """
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = '"' if any(c in value for c in "\x85\u2028\u2029") else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, represent_str)
    return Dumper


def _env_names(fields: Fields, path: str) -> dict[str, str]:
    """Fields as text, checking each name is a valid env var name and no value holds NUL."""
    values = _text_fields(fields, path)
    for name, value in values.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise RenderError(
                f"{path}: field {name!r} is not an environment variable name "
                "([A-Za-z_][A-Za-z0-9_]*); select another field with #key or use a template"
            )
        if "\0" in value:
            raise RenderError(f"{path}: field {name!r} holds a NUL byte, which env cannot carry")
    return values


def _env(fields: Fields, path: str) -> bytes:
    """``K=V`` lines; backslash, newline and carriage return escaped so it reverses."""
    lines = [f"{name}={_escape(value)}\n" for name, value in _env_names(fields, path).items()]
    return "".join(lines).encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _dotenv(fields: Fields, path: str) -> bytes:
    """``export K='V'`` lines: inside single quotes sh expands nothing, so only ``'`` needs care."""
    values = _env_names(fields, path).items()
    return "".join(f"export {name}={_sh_quote(value)}\n" for name, value in values).encode()


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _template(template: str, fields: Fields, *, path: str) -> str:
    """``string.Template`` substitution; errors name the placeholder, not the values."""
    try:
        return string.Template(template).substitute(_text_fields(fields, path))
    except KeyError as exc:
        names = ", ".join(sorted(fields)) or "(none)"
        raise RenderError(
            f"{path}: the template uses ${{{exc.args[0]}}} but the secret has no such field; "
            f"its fields are: {names}"
        ) from None
    except ValueError as exc:
        raise RenderError(f"{path}: bad template: {exc} (write $$ for a literal $)") from None


_FORMATS: dict[str, Callable[[Fields, str], bytes]] = {
    "json": _json,
    "yaml": _yaml,
    "env": _env,
    "dotenv": _dotenv,
}
