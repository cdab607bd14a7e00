"""SECURITY.md names a test for each claim: every one it names must exist, and every test
in this package must be named there, so the document and the tests cannot drift apart."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
# `tests/x/test_y.py::test_z`, `test_y.py::test_z` (this package) or `::test_z` (the last file).
REFERENCE = re.compile(r"`((?:tests/[\w/]+/)?test_\w+\.py)?(?:::(test_\w+))?`")


def named_tests() -> set[tuple[Path, str]]:
    """(file, test) pairs SECURITY.md names, short forms resolved."""
    named: set[tuple[Path, str]] = set()
    current: Path | None = None
    for match in REFERENCE.finditer((REPO / "SECURITY.md").read_text(encoding="utf-8")):
        file, test = match.groups()
        if file:
            current = REPO / file if file.startswith("tests/") else HERE / file
        if test:
            assert current is not None, f"::{test} names no file"
            named.add((current, test))
    return named


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_test_named_in_security_md_exists() -> None:
    named = named_tests()
    assert len(named) >= 15
    missing = [f"{path.name}::{test}" for path, test in named if test not in defined_tests(path)]
    assert missing == []


def test_every_security_test_backs_a_claim_in_security_md() -> None:
    named = {(path.name, test) for path, test in named_tests()}
    ours = {
        (path.name, test)
        for path in HERE.glob("test_*.py")
        if path != Path(__file__)
        for test in defined_tests(path)
        if test.startswith("test_")
    }
    assert sorted(ours - named) == []
