"""The gcp store's path parser and its CRC-32C: every form, and a clear refusal for the rest."""

from __future__ import annotations

import google_crc32c
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.paths.gcp import FORMS, GcpRef, parse_path
from sidecar.stores.crc32c import crc32c


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("db-password", GcpRef("my-project", "db-password"), id="short-name"),
        pytest.param("db@3", GcpRef("my-project", "db", "3"), id="version-number"),
        pytest.param("db@latest", GcpRef("my-project", "db", "latest"), id="latest"),
        pytest.param("db@stable", GcpRef("my-project", "db", "stable"), id="alias"),
        pytest.param("projects/other-proj/secrets/db_1/versions/2",
                     GcpRef("other-proj", "db_1", "2"), id="full-name"),
        pytest.param("projects/123456789012/secrets/db/versions/latest",
                     GcpRef("123456789012", "db", "latest"), id="project-number"),
    ],
)  # fmt: skip
def test_forms(path: str, expected: GcpRef) -> None:
    assert parse_path(path, project="my-project") == expected


def test_resource_is_secret_managers_name() -> None:
    ref = parse_path("db@2", project="my-project")
    assert ref.resource == "projects/my-project/secrets/db/versions/2"


@pytest.mark.parametrize(
    ("path", "project", "why"),
    [
        pytest.param("db", None, "the store has no project", id="short-without-project"),
        pytest.param("app/db", "my-project", "only valid in the full", id="slash"),
        pytest.param("db@0", "my-project", "a version is", id="version-zero"),
        pytest.param("db@", "my-project", "a version is", id="empty-version"),
        pytest.param("", "my-project", "a secret name", id="empty"),
        pytest.param("db.json", "my-project", "a secret name", id="dot-in-name"),
        pytest.param("projects/P!/secrets/db/versions/1", None, "project", id="bad-project"),
        pytest.param("projects/p/secrets/db", None, "only valid in the full", id="no-version"),
        pytest.param("db@1@2", "my-project", "a version is", id="two-versions"),
    ],
)
def test_refusals_name_the_path_and_the_forms(path: str, project: str | None, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_path(path, project=project)
    assert repr(path) in str(caught.value)
    assert why in str(caught.value)
    assert FORMS in str(caught.value)


NAMES = st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)
VERSIONS = st.one_of(st.just("latest"), st.integers(1, 10**18).map(str))


@given(name=NAMES, version=VERSIONS)
def test_short_and_full_forms_agree(name: str, version: str) -> None:
    short = parse_path(f"{name}@{version}", project="my-project")
    assert parse_path(short.resource, project=None) == short


@given(path=st.text(max_size=60))
def test_anything_parses_or_is_a_config_error(path: str) -> None:
    try:
        ref = parse_path(path, project="my-project")
    except ConfigError:
        return
    assert ref.resource.startswith("projects/my-project/") or path.startswith("projects/")


# --- CRC-32C ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(bytes(32), 0x8A9136AA, id="rfc3720-zeros"),
        pytest.param(b"\xff" * 32, 0x62A8AB43, id="rfc3720-ones"),
        pytest.param(bytes(range(32)), 0x46DD794E, id="rfc3720-incrementing"),
        pytest.param(bytes(range(31, -1, -1)), 0x113FDB5C, id="rfc3720-decrementing"),
        pytest.param(b"123456789", 0xE3069283, id="check-value"),
        pytest.param(b"", 0, id="empty"),
    ],
)
def test_crc32c_known_vectors(data: bytes, expected: int) -> None:
    assert crc32c(data) == expected


@given(data=st.binary(max_size=2048))
def test_crc32c_agrees_with_google_crc32c(data: bytes) -> None:
    assert crc32c(data) == google_crc32c.value(data)
