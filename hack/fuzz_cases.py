"""Hypothesis strategies for hostile admission requests: bodies with their content type.

Four families, each a strategy of :data:`Case`:

- ``envelope``: a real review with envelope fields replaced by junk or removed;
- ``pod``: a real review with pod fields (metadata, containers, security
  contexts, volumes...) replaced by values of the wrong type;
- ``annotations``: hostile annotation keys (odd prefixes) and values (unicode,
  surrogates, null bytes, huge strings, near-valid values, non-strings);
- ``raw``: bodies that are not JSON, truncated, deeply nested, of odd content types.

The real reviews are ``tests/fixtures/reviews``, as the API server sends them.
What the answers must be is :func:`hack.fuzz_webhook.check`'s business.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[1]
REVIEWS = sorted((REPO / "tests/fixtures/reviews").glob("*.json"))
JSON = "application/json"
Case = tuple[bytes, str]  # a body and its content type

ODD_CHARS = ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\U0010ffff", "\n", "é", "\U0001d518"]
chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(ODD_CHARS))
short_text = st.text(chars, max_size=24)
SPECIAL = [
    "", " ", "true", "false", "null", "0", "-1", "1e309", "../../etc/passwd", "/", "//",
    "https://evil.example:8200", "http://169.254.169.254/", "${password}", "$", "#", "a#",
    "secret/data/x#", "signal:KILL:app", "signal:HUP:", "http://localhost:0/", "{'a': 1}",
    "%s%n", "\x00", "\ud800", "app,app", "0777", "-1s", "25h", "1e3Mi", "NaN",
]  # fmt: skip
huge_text = st.builds(lambda part, n: (part or "x")[:4] * n, short_text, st.integers(1_000, 50_000))
texts = st.one_of(*[short_text] * 5, *[st.sampled_from(SPECIAL)] * 4, huge_text)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False), texts,
)  # fmt: skip
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(short_text, inner, max_size=4)
    ),
    max_leaves=10,
)
DELETE = object()  # a path's replacement that removes the field instead

ENVELOPE_PATHS: list[tuple[str | int, ...]] = [
    (), ("apiVersion",), ("kind",), ("request",), ("request", "uid"), ("request", "kind"),
    ("request", "kind", "kind"), ("request", "kind", "group"), ("request", "kind", "version"),
    ("request", "resource"), ("request", "resource", "resource"), ("request", "subResource"),
    ("request", "namespace"), ("request", "operation"), ("request", "dryRun"),
    ("request", "object"), ("request", "oldObject"), ("request", "userInfo"), ("request", "name"),
]  # fmt: skip
_C, _S = ("spec", "containers", 0), ("spec", "securityContext")
POD_PATHS: list[tuple[str | int, ...]] = [
    ("metadata",), ("metadata", "annotations"), ("metadata", "name"), ("metadata", "labels"),
    ("spec",), ("spec", "containers"), _C, (*_C, "name"), (*_C, "command"), (*_C, "args"),
    (*_C, "env"), (*_C, "env", 0), (*_C, "env", 0, "name"), (*_C, "volumeMounts"),
    (*_C, "volumeMounts", 0), (*_C, "volumeMounts", 0, "mountPath"), (*_C, "securityContext"),
    (*_C, "securityContext", "runAsUser"), (*_C, "securityContext", "runAsGroup"),
    ("spec", "initContainers"), ("spec", "initContainers", 0),
    ("spec", "initContainers", 0, "name"),
    ("spec", "volumes"), ("spec", "volumes", 0), ("spec", "volumes", 0, "name"), _S,
    (*_S, "runAsUser"), (*_S, "runAsGroup"), (*_S, "fsGroup"), ("spec", "serviceAccountName"),
    ("spec", "serviceAccount"), ("spec", "shareProcessNamespace"),
]  # fmt: skip


def set_at(document: Any, path: tuple[str | int, ...], value: object) -> Any:
    """``document`` with the field at ``path`` set to ``value`` (or removed), making the
    containers on the way when they are missing or of another type."""
    if not path:
        return None if value is DELETE else value
    root: dict[str, Any] = document if isinstance(document, dict) else {}
    node: Any = root
    for step, following in itertools.pairwise(path):
        child = node.get(step) if isinstance(node, dict) else node[step]
        if isinstance(following, int) and not (isinstance(child, list) and child):
            child = [{}]
        elif isinstance(following, str) and not isinstance(child, dict):
            child = {}
        node[step] = child
        node = child
    if value is DELETE and isinstance(node, dict):
        node.pop(path[-1], None)
    else:
        node[path[-1]] = None if value is DELETE else value
    return root


TEXTS = [path.read_text(encoding="utf-8") for path in REVIEWS]
base_reviews = st.sampled_from(TEXTS).map(json.loads)  # a fresh copy for each case


def _encode(document: object, raw_unicode: bool = False) -> bytes:
    """JSON as a client writes it: escaped, or raw UTF-8 (surrogates then make it invalid)."""
    return json.dumps(document, ensure_ascii=not raw_unicode).encode("utf-8", "surrogatepass")


@st.composite
def _replaced(draw: st.DrawFn, paths: list[tuple[str | int, ...]], prefix: tuple[str, ...]) -> Case:
    review = draw(base_reviews)
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
        review = set_at(review, prefix + path, draw(st.one_of(junk, st.just(DELETE))))
    return _encode(review, draw(st.booleans())), JSON


def envelopes() -> st.SearchStrategy[Case]:
    return _replaced(ENVELOPE_PATHS, ())


def pods() -> st.SearchStrategy[Case]:
    return _replaced(POD_PATHS, ("request", "object"))


OURS = [
    "inject", "store", "role", "containers", "mount-path", "init-only", "refresh", "on-change",
    "agent-cpu", "agent-memory", "status", "secret-db", "env-API_KEY", "format-db",
    "template-db", "file-mode-db", "secret-", "env-", "secret-..", "secret-A", "env-1X",
]  # fmt: skip
PREFIXES = [
    "latchkey.dev/", "latchkey.dev/", "Latchkey.dev/", "LATCHKEY.DEV/", "latchkey.dev//",
    " latchkey.dev/", "latchkey.dev", "latchkey.dev/latchkey.dev/", "latchkey.dev\x00/",
    "xlatchkey.dev/", "latchkey.dev./", "a.latchkey.dev/", "",
]  # fmt: skip
NEAR_VALID = [
    "true", "secret/data/app/db", "secret/data/app/db#password", "app", "web,worker",
    "/etc/secrets", "30s", "signal:HUP:app", "http://localhost:8080/-/reload", "50m",
    "64Mi", "json", "raw", "0400", "${password}", "default", "aws", "team-vault", "injected",
]  # fmt: skip
annotation_keys = st.builds(
    lambda prefix, name: prefix + name, st.sampled_from(PREFIXES),
    st.one_of(st.sampled_from(OURS), st.sampled_from(OURS).map(lambda k: k + "x"), short_text),
)  # fmt: skip
annotation_values = st.one_of(st.sampled_from(NEAR_VALID), texts, texts, junk)


@st.composite
def annotation_sets(draw: st.DrawFn) -> Case:
    """A real review whose pod carries hostile ``latchkey.dev/`` annotations."""
    review = draw(base_reviews)
    metadata = review["request"]["object"]["metadata"]
    drawn = draw(st.dictionaries(annotation_keys, annotation_values, min_size=1, max_size=8))
    kept = metadata.get("annotations", {}) if draw(st.booleans()) else {}
    inject = {"latchkey.dev/inject": "true"} if draw(st.integers(0, 9)) else {}
    metadata["annotations"] = {**kept, **inject, **drawn}
    return _encode(review, draw(st.booleans())), JSON


def _nested(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    inner = opener.replace("{", '{"a":') * depth
    return f'{{"request":{inner}1{closer * depth}}}'.encode()


CONTENT_TYPES = [
    JSON,
    JSON,
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/plain",
    "",
]
raw_bodies = st.one_of(
    st.binary(max_size=256),
    st.builds(lambda text, cut: text.encode()[:cut], st.sampled_from(TEXTS), st.integers(0, 4000)),
    st.builds(_nested, st.integers(1, 100_000), st.sampled_from(["[", "{"])),
    st.builds(lambda b: b'{"apiVersion":"' + b + b'"}', st.binary(max_size=16)),
    st.sampled_from([b"[]", b"null", b"1", b'"x"', b"{}", b" ", b"\xef\xbb\xbf{}", b"NaN"]),
)  # fmt: skip


def raw() -> st.SearchStrategy[Case]:
    return st.tuples(raw_bodies, st.sampled_from(CONTENT_TYPES))


FAMILIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "envelope": envelopes,
    "pod": pods,
    "annotations": annotation_sets,
    "raw": raw,
}
