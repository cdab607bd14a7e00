"""The Dockerfiles lint clean and keep the final stage slim, pinned and non-root.
What the built images hold and do is checked on the real images in tests/containers."""

from __future__ import annotations

import subprocess

import pytest

from tests.deploy.tools import REPO, VENV_BIN

DOCKERFILES = ["Dockerfile.webhook", "Dockerfile.sidecar"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_passes(dockerfile: str) -> None:
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--failure-threshold", "info", dockerfile],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_final_stage_is_slim_pinned_and_non_root(dockerfile: str) -> None:
    text = (REPO / dockerfile).read_text(encoding="utf-8")
    bases = [line.split()[1] for line in text.splitlines() if line.startswith("FROM ")]
    assert len(bases) == 2, "multi-stage: a build stage and a final stage"
    assert bases[1].startswith("python:3.11.")
    assert bases[1].endswith("-slim-bookworm")
    assert bases[1].count(".") == 2, f"{bases[1]}: pin the exact patch release"
    final = text.split("\nFROM ")[-1]
    assert "\nUSER 65532:65532\n" in final
    assert "PYTHONDONTWRITEBYTECODE=1" in final
    assert " cc " not in final
    assert "apt-get" not in final
