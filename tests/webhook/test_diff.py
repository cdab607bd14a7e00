"""The admission path's JSON diff: any two documents, the patch applies and gives the
second; equal documents give no ops; the copy shares nothing with its source."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.diff import clone, diff

KEYS = st.sampled_from(["a", "b", "name", "x/y", "t~0", "", "env", "0"])
LEAVES = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3)
JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def edited(draw: st.DrawFn) -> tuple[Any, Any]:
    """A document and a near copy: the shape a mutation makes (inserts, edits, deletes)."""
    src = draw(JSON)
    dst = copy.deepcopy(src)
    node: Any = dst
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        keys: list[Any] = list(node) if isinstance(node, dict) else list(range(len(node)))
        node = node[draw(st.sampled_from(keys))]
    if isinstance(node, list):
        node.insert(draw(st.integers(0, len(node))), draw(JSON))
    elif isinstance(node, dict):
        node[draw(KEYS)] = draw(JSON)
    return src, dst


@settings(max_examples=400)
@given(pair=st.one_of(st.tuples(JSON, JSON), edited()))
def test_the_patch_turns_the_first_document_into_the_second(pair: tuple[Any, Any]) -> None:
    src, dst = pair
    before = copy.deepcopy(src)
    ops = diff(src, dst)
    assert jsonpatch.apply_patch(src, ops) == dst
    assert src == before
    assert {op["op"] for op in ops} <= {"add", "remove", "replace"}


@given(doc=JSON)
def test_equal_documents_give_no_ops_and_a_clone_shares_nothing(doc: Any) -> None:
    copied = clone(doc)
    assert copied == doc
    assert diff(doc, copied) == []
    if isinstance(copied, dict | list) and copied:
        copied.clear()
        assert doc


@pytest.mark.parametrize(
    ("src", "dst", "ops"),
    [
        pytest.param(
            {"l": [1, 2]},
            {"l": [1, 9, 2]},
            [{"op": "add", "path": "/l/1", "value": 9}],
            id="insert-in-the-middle",
        ),
        pytest.param(
            {"l": [1]},
            {"l": [1, 2, 3]},
            [{"op": "add", "path": "/l/1", "value": 2}, {"op": "add", "path": "/l/2", "value": 3}],
            id="append",
        ),
        pytest.param(
            {"a/b": {"c~d": 1}},
            {"a/b": {"c~d": 2}},
            [{"op": "replace", "path": "/a~1b/c~0d", "value": 2}],
            id="escaped-pointer",
        ),
        pytest.param({"a": 1}, {}, [{"op": "remove", "path": "/a"}], id="remove-key"),
        pytest.param(
            {"a": 1}, {"a": "1"}, [{"op": "replace", "path": "/a", "value": "1"}], id="type-change"
        ),
    ],
)
def test_small_diffs_are_minimal(src: Any, dst: Any, ops: list[dict[str, Any]]) -> None:
    assert diff(src, dst) == ops
