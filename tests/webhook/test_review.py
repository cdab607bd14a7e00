"""The envelope's two roads agree: whatever the quick parse (JSON to Python values, then the
envelope validated) accepts, the strict one (``model_validate_json``) accepts as the very
same review; everything else takes the strict road, which alone words the refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hack.fuzz_cases import TEXTS, envelopes, pods, raw
from webhook.errors import BadRequest
from webhook.review import AdmissionReview, _parse_fast, parse_review

PARSER_DEPTH = 200  # pydantic-core's JSON parser stops about here


def strict(body: bytes) -> AdmissionReview | None:
    try:
        return AdmissionReview.model_validate_json(body)
    except ValidationError:
        return None


def same(one: AdmissionReview, other: AdmissionReview) -> bool:
    """Equal, down to each value's type (1, 1.0 and True are equal in Python)."""
    return repr(one.model_dump()) == repr(other.model_dump())


def assert_agree(body: bytes) -> None:
    fast = _parse_fast(body)
    if fast is not None:
        expected = strict(body)
        assert expected is not None, body[:300]
        assert same(fast, expected), body[:300]


@settings(max_examples=400, deadline=None)
@given(st.one_of(envelopes(), pods(), raw()))
def test_the_quick_parse_accepts_only_what_the_strict_one_does(case: tuple[bytes, str]) -> None:
    assert_agree(case[0])


def _review(**request: Any) -> bytes:
    document = json.loads(TEXTS[0])
    document["request"].update(request)
    return json.dumps(document).encode()


def _deep(levels: int, opener: str) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value] if opener == "[" else {"a": value}
    return value


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_review(dryRun="true"), id="lax-boolean"),
        pytest.param(_review(dryRun=1), id="integer-boolean"),
        pytest.param(_review(uid=""), id="empty-uid"),
        pytest.param(_review(uid=7), id="number-uid"),
        pytest.param(_review(object={"big": 2**70, "small": -(2**70)}), id="big-integers"),
        pytest.param(_review(object={"f": 1.0, "i": 1, "b": True}), id="number-types"),
        pytest.param(_review().replace(b'"v1"', b"1e400", 1), id="infinite-number"),
        pytest.param(_review().replace(b'"v1"', b"NaN", 1), id="nan"),
        pytest.param(b'{"a": 1, "a": 2}', id="duplicate-keys"),
        pytest.param(_review().replace(b"Pod", b"\\ud800", 1), id="lone-surrogate"),
        *(
            pytest.param(_review(object={"deep": _deep(levels, opener)}), id=f"{opener}-{levels}")
            for levels in (PARSER_DEPTH - 10, PARSER_DEPTH - 4, PARSER_DEPTH, PARSER_DEPTH + 1)
            for opener in "[{"
        ),
    ],
)
def test_the_roads_agree_at_the_edges(body: bytes) -> None:
    assert_agree(body)


@pytest.mark.parametrize("opener", ["[", "{"])
def test_nesting_past_the_strict_parser_depth_is_refused_as_before(opener: str) -> None:
    body = _review(object={"deep": _deep(PARSER_DEPTH + 5, opener)})
    assert _parse_fast(body) is None
    with pytest.raises(BadRequest, match="nests too deep"):
        parse_review(body)


def test_the_typical_review_takes_the_quick_road() -> None:
    body = TEXTS[0].encode()
    fast = _parse_fast(body)
    assert fast is not None
    assert same(fast, AdmissionReview.model_validate_json(body))
