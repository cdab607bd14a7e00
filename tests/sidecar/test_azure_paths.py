"""The azure store's path parser: ``NAME`` and ``NAME/VERSION`` as Key Vault spells them,
and a refusal naming the path and the valid forms for everything else."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.paths.azure import FORMS, AzureRef, parse_path

VERSION = "4387e9f3d6e14c459867679a90fd0f79"


@pytest.mark.parametrize(
    ("path", "expected", "url_path"),
    [
        pytest.param("db-password", AzureRef("db-password"), "secrets/db-password", id="name"),
        pytest.param("A1", AzureRef("A1"), "secrets/A1", id="mixed-case-and-digits"),
        pytest.param("x" * 127, AzureRef("x" * 127), "secrets/" + "x" * 127, id="longest-name"),
        pytest.param(f"db/{VERSION}", AzureRef("db", VERSION), f"secrets/db/{VERSION}",
                     id="version"),
        pytest.param(f"db/{VERSION.upper()}", AzureRef("db", VERSION.upper()),
                     f"secrets/db/{VERSION.upper()}", id="upper-case-version"),
    ],
)  # fmt: skip
def test_valid_paths(path: str, expected: AzureRef, url_path: str) -> None:
    ref = parse_path(path)
    assert (ref, ref.url_path) == (expected, url_path)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        pytest.param("", "name is empty", id="empty"),
        pytest.param("db_password", "characters Key Vault does not allow", id="underscore"),
        pytest.param("db.password", "characters Key Vault does not allow", id="dot"),
        pytest.param("x" * 128, "characters Key Vault does not allow", id="name-too-long"),
        pytest.param("/db", "name is empty", id="leading-slash"),
        pytest.param("db/", "32 hex digits", id="empty-version"),
        pytest.param("db/latest", "32 hex digits", id="latest-is-no-version"),
        pytest.param(f"db/{VERSION[:-1]}", "32 hex digits", id="short-version"),
        pytest.param(f"db/{VERSION}/x", "32 hex digits", id="extra-segment"),
        pytest.param("secrets/db", "32 hex digits", id="url-path-given"),
        pytest.param("https://v.vault.azure.net/secrets/db", "characters", id="secret-url"),
    ],
)
def test_invalid_paths_name_the_path_and_the_forms(path: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_path(path)
    message = str(caught.value)
    assert f"azure store path {path!r} is not valid" in message
    assert why in message
    assert message.endswith(FORMS)


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                min_size=1, max_size=127)  # fmt: skip
ORACLE = re.compile(r"[0-9A-Za-z-]{1,127}(/[0-9a-fA-F]{32})?")  # Key Vault's documented rules
VERSIONS = st.text(alphabet="0123456789abcdefABCDEF", min_size=32, max_size=32)


@given(name=NAMES, version=st.none() | VERSIONS)
def test_every_key_vault_name_and_version_parses_back(name: str, version: str | None) -> None:
    path = name if version is None else f"{name}/{version}"
    ref = parse_path(path)
    assert (ref.name, ref.version) == (name, version)
    assert ref.url_path == f"secrets/{path}"


@given(st.text(max_size=200))
def test_any_text_parses_as_key_vault_allows_or_is_a_config_error(path: str) -> None:
    if ORACLE.fullmatch(path):
        assert parse_path(path).url_path == f"secrets/{path}"
    else:
        with pytest.raises(ConfigError, match=re.escape(repr(path))):
            parse_path(path)
