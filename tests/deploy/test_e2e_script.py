"""hack/e2e-kind.sh cannot run here (no Docker, no cluster): check that it parses, keeps
its safety settings, and that every file it uses exists and is valid."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.schemas import validate
from tests.deploy.tools import REPO

SCRIPT = REPO / "hack" / "e2e-kind.sh"


def test_parses_with_bash() -> None:
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_fails_fast_and_cleans_up() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert "\nset -euo pipefail\n" in text
    assert "\ntrap cleanup EXIT\n" in text
    assert "kind delete cluster" in text


def test_every_repository_file_it_names_exists() -> None:
    named = set(re.findall(r"\$REPO/([\w./$-]+)", SCRIPT.read_text(encoding="utf-8")))
    named = {n.replace("$part", part) for n in named for part in ("webhook", "sidecar")}
    assert "manifests/examples/sample-app.yaml" in named
    missing = sorted(n for n in named if not (REPO / n).exists())
    assert missing == []


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
def test_sample_app_validates(version: str) -> None:
    path: Path = REPO / "manifests" / "examples" / "sample-app.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    for doc in docs:
        validate(doc, version)
    (pod,) = (d for d in docs if d["kind"] == "Pod")
    assert pod["metadata"]["annotations"]["latchkey.dev/inject"] == "true"
