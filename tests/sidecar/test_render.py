"""Rendering: every format and template, their errors, and round trips."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.config import EnvSecret, SecretFile
from sidecar.errors import RenderError
from sidecar.render import env_file, env_value, render_file
from sidecar.stores.base import Secret

DB = Secret("secret/data/app/db", {"username": "appuser", "password": "s3cr3t"})
SCALAR = Secret("kv/token", {"value": "tok-123"}, scalar=True)
NESTED = Secret("kv/cfg", {"port": 5432, "opts": {"ssl": True, "hosts": ["a", "b"]}, "empty": None})
UNICODE = Secret("kv/i18n", {"greeting": "héllo wörld ✓ 日本"})
BINARY = Secret("secretsmanager:blob", {"value": b"\x00\xff\x10\n"}, scalar=True)
ESCAPES = Secret("kv/esc", {"V": "a\\b\nc\rd"})
QUOTES = Secret("kv/q", {"V": "it's"})


def spec(**kwargs: Any) -> SecretFile:
    return SecretFile(name="out", path="p", **kwargs)


RENDER_CASES = [
    pytest.param(
        spec(), DB, b'{\n  "username": "appuser",\n  "password": "s3cr3t"\n}\n', id="json-default"
    ),
    pytest.param(spec(key="password"), DB, b"s3cr3t", id="raw-default-with-key"),
    pytest.param(spec(), SCALAR, b"tok-123", id="raw-default-scalar"),
    pytest.param(
        spec(format="json", key="password"), DB, b'{\n  "password": "s3cr3t"\n}\n', id="json-key"
    ),
    pytest.param(spec(format="json"), SCALAR, b'{\n  "value": "tok-123"\n}\n', id="json-scalar"),
    pytest.param(
        spec(format="json"),
        NESTED,
        b'{\n  "port": 5432,\n  "opts": {\n    "ssl": true,\n    "hosts": [\n'
        b'      "a",\n      "b"\n    ]\n  },\n  "empty": null\n}\n',
        id="json-nested",
    ),
    pytest.param(
        spec(format="json"),
        UNICODE,
        '{\n  "greeting": "héllo wörld ✓ 日本"\n}\n'.encode(),
        id="json-unicode",
    ),
    pytest.param(spec(format="yaml"), DB, b"username: appuser\npassword: s3cr3t\n", id="yaml"),
    pytest.param(spec(format="yaml", key="password"), DB, b"password: s3cr3t\n", id="yaml-key"),
    pytest.param(
        spec(format="yaml"),
        NESTED,
        b"port: 5432\nopts:\n  ssl: true\n  hosts:\n  - a\n  - b\nempty: null\n",
        id="yaml-nested",
    ),
    pytest.param(
        spec(format="yaml"), UNICODE, "greeting: héllo wörld ✓ 日本\n".encode(), id="yaml-unicode"
    ),
    pytest.param(
        spec(format="yaml"),
        Secret("p", {"k": "a\x85b"}),
        b'k: "a\\Nb"\n',
        id="yaml-line-separators",
    ),
    pytest.param(spec(format="env"), DB, b"username=appuser\npassword=s3cr3t\n", id="env"),
    pytest.param(spec(format="env", key="password"), DB, b"password=s3cr3t\n", id="env-key"),
    pytest.param(spec(format="env"), ESCAPES, b"V=a\\\\b\\nc\\rd\n", id="env-escapes"),
    pytest.param(
        spec(format="env"),
        NESTED,
        b'port=5432\nopts={"ssl":true,"hosts":["a","b"]}\nempty=null\n',
        id="env-nested",
    ),
    pytest.param(
        spec(format="env"), UNICODE, "greeting=héllo wörld ✓ 日本\n".encode(), id="env-unicode"
    ),
    pytest.param(
        spec(format="dotenv"),
        DB,
        b"export username='appuser'\nexport password='s3cr3t'\n",
        id="dotenv",
    ),
    pytest.param(
        spec(format="dotenv", key="username"), DB, b"export username='appuser'\n", id="dotenv-key"
    ),
    pytest.param(spec(format="dotenv"), QUOTES, b"export V='it'\\''s'\n", id="dotenv-quote"),
    pytest.param(spec(format="raw", key="port"), NESTED, b"5432", id="raw-int"),
    pytest.param(spec(key="opts"), NESTED, b'{"ssl":true,"hosts":["a","b"]}', id="raw-nested"),
    pytest.param(spec(key="empty"), NESTED, b"null", id="raw-null"),
    pytest.param(spec(key="greeting"), UNICODE, "héllo wörld ✓ 日本".encode(), id="raw-unicode"),
    pytest.param(spec(), BINARY, b"\x00\xff\x10\n", id="raw-binary-scalar"),
    pytest.param(spec(format="raw", key="value"), BINARY, b"\x00\xff\x10\n", id="raw-binary-key"),
    pytest.param(spec(format="yaml"), BINARY, b"value: !!binary |\n  AP8QCg==\n", id="yaml-binary"),
    pytest.param(
        spec(template="postgres://${username}:${password}@db/app"),
        DB,
        b"postgres://appuser:s3cr3t@db/app",
        id="template",
    ),
    pytest.param(
        spec(template="$$HOME is $username"), DB, b"$HOME is appuser", id="template-dollar-escape"
    ),
    pytest.param(
        spec(template="pw=${password}\n", key="password"), DB, b"pw=s3cr3t\n", id="template-key"
    ),
    pytest.param(
        spec(template="${port} ${opts} ${empty}"),
        NESTED,
        b'5432 {"ssl":true,"hosts":["a","b"]} null',
        id="template-nested",
    ),
    pytest.param(
        spec(template="¡${greeting}!"),
        UNICODE,
        "¡héllo wörld ✓ 日本!".encode(),
        id="template-unicode",
    ),
    pytest.param(
        spec(template="$username", format="json"), DB, b"appuser", id="template-wins-over-format"
    ),
]


@pytest.mark.parametrize(("file_spec", "secret", "expected"), RENDER_CASES)
def test_render_file(file_spec: SecretFile, secret: Secret, expected: bytes) -> None:
    assert render_file(file_spec, secret) == expected


HOSTILE = Secret("secret/data/app/x", {"api-key": "VALUE-1", "token": "VALUE-2\0x"})

ERROR_CASES = [
    pytest.param(
        spec(key="pasword"),
        DB,
        ["file out", "secret/data/app/db", "'pasword'", "password, username"],
        id="missing-key",
    ),
    pytest.param(
        spec(key="pasword", format="json"),
        DB,
        ["secret/data/app/db", "'pasword'", "password, username"],
        id="missing-key-json",
    ),
    pytest.param(
        spec(key="pasword", template="$pasword"),
        DB,
        ["secret/data/app/db", "'pasword'"],
        id="missing-key-template",
    ),
    pytest.param(
        spec(template="${user}@db"),
        DB,
        ["secret/data/app/db", "${user}", "password, username"],
        id="template-missing-placeholder",
    ),
    pytest.param(
        spec(template="cost: 5$"),
        DB,
        ["secret/data/app/db", "bad template", "$$"],
        id="template-bad",
    ),
    pytest.param(
        spec(format="env"),
        HOSTILE,
        ["secret/data/app/x", "'api-key'", "environment variable name"],
        id="env-bad-name",
    ),
    pytest.param(
        spec(format="dotenv"), HOSTILE, ["secret/data/app/x", "'api-key'"], id="dotenv-bad-name"
    ),
    pytest.param(
        spec(format="env", key="token"),
        HOSTILE,
        ["secret/data/app/x", "'token'", "NUL"],
        id="env-nul",
    ),
    pytest.param(
        spec(format="raw"),
        DB,
        ["file out", "raw", "secret/data/app/db#key", "password, username"],
        id="raw-without-key",
    ),
    pytest.param(
        spec(format="json"),
        Secret("b", {"k": b"VALUE-3\xff"}),
        ["b", "binary", "raw"],
        id="json-binary",
    ),
    pytest.param(
        spec(format="env"),
        Secret("b", {"K": b"VALUE-4\xff"}),
        ["b", "'K'", "binary"],
        id="env-binary",
    ),
    pytest.param(
        spec(key="nope"),
        Secret("kv/empty", {}),
        ["kv/empty", "'nope'", "(none)"],
        id="missing-key-no-fields",
    ),
    pytest.param(
        spec(format="env"),
        Secret("kv/s", {"K": "VALUE-\ud800"}),
        ["file out", "kv/s", "Unicode"],
        id="lone-surrogate",
    ),
]


@pytest.mark.parametrize(("file_spec", "secret", "expected"), ERROR_CASES)
def test_render_errors_name_the_problem_never_a_value(
    file_spec: SecretFile, secret: Secret, expected: list[str]
) -> None:
    with pytest.raises(RenderError) as info:
        render_file(file_spec, secret)
    message = str(info.value)
    for part in expected:
        assert part in message
    for value in ("s3cr3t", "appuser", "VALUE-"):
        assert value not in message


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("password", "s3cr3t", id="string"),
        pytest.param("port", "5432", id="int"),
        pytest.param("opts", '{"ssl":true,"hosts":["a","b"]}', id="nested"),
        pytest.param("empty", "null", id="null"),
    ],
)
def test_env_value(key: str, expected: str) -> None:
    secret = Secret("p", {**DB.fields, **NESTED.fields})
    assert env_value(EnvSecret(name="V", path="p", key=key), secret) == expected


def test_env_value_missing_key_names_variable_path_and_key() -> None:
    with pytest.raises(RenderError) as info:
        env_value(EnvSecret(name="DB_PASS", path="p", key="pw"), DB)
    message = str(info.value)
    assert all(part in message for part in ("DB_PASS", "secret/data/app/db", "'pw'", "password"))
    assert "s3cr3t" not in message


def test_env_file_records() -> None:
    values = {"A": "1", "MULTI": "x\ny=z", "EMPTY": ""}
    assert env_file(values) == b"A=1\0MULTI=x\ny=z\0EMPTY=\0"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({"TOKEN": "VALUE-\0x"}, "TOKEN", id="nul-in-value"),
        pytest.param({"A=B": "VALUE-1"}, "'A=B'", id="bad-name"),
        pytest.param({"SURROGATE": "VALUE-\ud800"}, "SURROGATE", id="not-unicode"),
    ],
)
def test_env_file_errors(values: dict[str, str], expected: str) -> None:
    with pytest.raises(RenderError, match=re.escape(expected)) as info:
        env_file(values)
    assert "VALUE-" not in str(info.value)


# --- round trips ------------------------------------------------------------------------

ENV_NAMES = st.from_regex(r"\ALK_[A-Za-z0-9_]{0,12}\Z")
TEXT = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=40)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _unescape_env(text: str) -> dict[str, str]:
    """The reader side of the env format, as a consumer would write it."""
    result = {}
    for line in text.split("\n")[:-1]:
        name, _, escaped = line.partition("=")
        result[name] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "\\": "\\"}[m[1]], escaped)
    return result


@given(st.dictionaries(ENV_NAMES, TEXT, max_size=6))
def test_env_round_trips(fields: dict[str, str]) -> None:
    text = render_file(spec(format="env"), Secret("p", fields)).decode()
    assert text.count("\n") == len(fields)
    assert _unescape_env(text) == fields


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=st.dictionaries(ENV_NAMES, TEXT, min_size=1, max_size=4))
def test_dotenv_round_trips_through_sh(tmp_path: Path, fields: dict[str, str]) -> None:
    assert _source_in_sh(tmp_path, spec(format="dotenv"), Secret("p", fields)) == fields


def _source_in_sh(tmp_path: Path, file_spec: SecretFile, secret: Secret) -> dict[str, str]:
    """Source the rendered file in a real ``sh`` and read each variable back."""
    env_path = tmp_path / "secrets.env"
    env_path.write_bytes(render_file(file_spec, secret))
    names = list(secret.fields)
    script = '. "$1" && printf "%s\\0" ' + " ".join(f'"${name}"' for name in names)
    out = subprocess.run(
        ["sh", "-c", script, "sh", str(env_path)],
        capture_output=True,
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    return dict(zip(names, out.decode().split("\0")[:-1], strict=True))


def test_dotenv_hostile_values_are_inert_in_sh(tmp_path: Path) -> None:
    fields = {
        "SUBST": "$(touch pwned1)",
        "TICKS": "`touch pwned2`",
        "QUOTES": "it's \"quoted\" '' \\'",
        "VARS": "$HOME ${PATH} $0 $1",
        "LINES": "line1\nline2\n\n",
        "GLOB": "* ? [a-z] ~",
        "UNI": "ünï ✓ 日本 \u2028 \x85",
        "EMPTY": "",
        "BACKSLASH": "\\n \\ \\\\",
    }
    assert _source_in_sh(tmp_path, spec(format="dotenv"), Secret("p", fields)) == fields
    assert not list(tmp_path.glob("pwned*"))


@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
def test_json_round_trips(fields: dict[str, Any]) -> None:
    rendered = render_file(spec(format="json"), Secret("p", fields))
    assert rendered.endswith(b"\n")
    assert json.loads(rendered) == fields


@given(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5))
def test_yaml_round_trips(fields: dict[str, Any]) -> None:
    assert yaml.safe_load(render_file(spec(format="yaml"), Secret("p", fields))) == fields
