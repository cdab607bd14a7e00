"""The aws store's path parser: every form it takes, and a clear refusal for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import ConfigError
from sidecar.paths.aws import (
    FORMS,
    ParameterPrefix,
    ParameterRef,
    SecretRef,
    parse_path,
)

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf"
VERSION = "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("secretsmanager:app/db", SecretRef("app/db"), id="name"),
        pytest.param("secretsmanager:" + ARN, SecretRef(ARN), id="arn"),
        pytest.param("secretsmanager:a+b=c.d@e_f-g", SecretRef("a+b=c.d@e_f-g"), id="all-chars"),
        pytest.param(
            "secretsmanager:app/db?version-stage=AWSPREVIOUS",
            SecretRef("app/db", version_stage="AWSPREVIOUS"),
            id="stage",
        ),
        pytest.param(
            "secretsmanager:app/db?version-stage=canary",
            SecretRef("app/db", version_stage="canary"),
            id="custom-stage",
        ),
        pytest.param(
            f"secretsmanager:{ARN}?version-id={VERSION}",
            SecretRef(ARN, version_id=VERSION),
            id="arn-and-version-id",
        ),
        pytest.param("ssm:/app/db/password", ParameterRef("/app/db/password"), id="parameter"),
        pytest.param("ssm:flat_name.v2", ParameterRef("flat_name.v2"), id="flat-parameter"),
        pytest.param("ssm:/app/db/*", ParameterPrefix("/app/db"), id="prefix"),
        pytest.param("ssm:/*", ParameterPrefix("/"), id="root-prefix"),
    ],
)
def test_valid_paths(path: str, expected: object) -> None:
    assert parse_path(path) == expected


@pytest.mark.parametrize(
    ("path", "why"),
    [
        pytest.param("app/db", "neither 'secretsmanager:' nor 'ssm:'", id="no-scheme"),
        pytest.param("secret/data/app", "neither", id="vault-path"),
        pytest.param("SSM:/app/db", "neither", id="scheme-case"),
        pytest.param("s3:bucket/key", "neither", id="other-service"),
        pytest.param("secretsmanager:", "empty", id="empty-name"),
        pytest.param("secretsmanager:app db", "characters", id="space-in-name"),
        pytest.param(
            "secretsmanager:app?version-stage=A&version-id=" + VERSION, "not both", id="both"
        ),
        pytest.param("secretsmanager:app?stage=A", "only options", id="unknown-option"),
        pytest.param("secretsmanager:app?version-stage", "only options", id="no-value"),
        pytest.param("secretsmanager:app?version-stage=", "stage is empty", id="empty-stage"),
        pytest.param("secretsmanager:app?version-id=123", "32 to 64", id="short-version-id"),
        pytest.param("ssm:", "SSM name", id="empty-parameter"),
        pytest.param("ssm:/app//db", "no empty segment", id="empty-segment"),
        pytest.param("ssm:/app/db/", "SSM name", id="trailing-slash"),
        pytest.param("ssm:app/db", "SSM name", id="relative-hierarchy"),
        pytest.param("ssm:/app/*/db", "'*' may only be", id="star-inside"),
        pytest.param("ssm:/app/db*", "'*' may only be", id="star-in-segment"),
        pytest.param("ssm:/app/**", "'*' may only be", id="double-star"),
        pytest.param("ssm:/app/db?version=2", "SSM name", id="query-on-ssm"),
    ],
)
def test_invalid_paths_name_the_path_and_the_forms(path: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_path(path)
    message = str(caught.value)
    assert repr(path) in message
    assert why in message
    assert FORMS in message


@given(st.text(max_size=80))
def test_any_text_parses_or_fails_clearly(path: str) -> None:
    """Whatever a user writes, the answer is a ref or a ConfigError naming the path."""
    valid = True
    try:
        ref = parse_path(path)
    except ConfigError as exc:
        valid, message = False, str(exc)
    if valid:
        assert path.startswith(("secretsmanager:", "ssm:"))
        assert isinstance(ref, SecretRef | ParameterRef | ParameterPrefix)
    else:
        assert repr(path) in message


_segment = st.text(st.sampled_from("abcXYZ019_.-"), min_size=1, max_size=12)


@given(st.lists(_segment, min_size=1, max_size=6))
def test_hierarchical_names_round_trip(segments: list[str]) -> None:
    name = "/" + "/".join(segments)
    assert parse_path(f"ssm:{name}") == ParameterRef(name)
    assert parse_path(f"ssm:{name}/*") == ParameterPrefix(name)


@given(st.text(st.sampled_from("abcXYZ019/_+=.@-:"), min_size=1, max_size=60), _segment)
def test_secret_ids_and_stages_round_trip(secret_id: str, stage: str) -> None:
    assert parse_path(f"secretsmanager:{secret_id}") == SecretRef(secret_id)
    expected = SecretRef(secret_id, version_stage=stage)
    assert parse_path(f"secretsmanager:{secret_id}?version-stage={stage}") == expected
