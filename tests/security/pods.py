"""The injected pods the static security tests look at: every golden, as admitted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from webhook.containers import AGENT, INIT

FIXTURES = Path(__file__).parents[1] / "fixtures"
GOLDEN = sorted((FIXTURES / "golden").glob("*.json"))
OURS = (INIT, AGENT)
Pod = dict[str, Any]


def golden_pods() -> list[Any]:
    """One pytest.param per golden pod, named after its file."""
    return [
        pytest.param(json.loads(path.read_text(encoding="utf-8")), id=path.stem) for path in GOLDEN
    ]


def containers(pod: Pod) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def ours(pod: Pod) -> list[dict[str, Any]]:
    return [c for c in containers(pod) if c["name"] in OURS]


def theirs(pod: Pod) -> list[dict[str, Any]]:
    return [c for c in containers(pod) if c["name"] not in OURS]


def mounted(container: dict[str, Any]) -> set[str]:
    return {m["name"] for m in container.get("volumeMounts", [])}
