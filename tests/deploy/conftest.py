"""Rendered overlays, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import MANIFESTS, hack_script, kustomize

OVERLAYS = ["cert-manager", "plain"]


@pytest.fixture(scope="session")
def manifests_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of manifests/ with the plain overlay's certificates generated into it,
    so the working tree never gets key material from a test run."""
    copy = tmp_path_factory.mktemp("deploy") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("tls.*", "ca.crt", "ca-*"))
    result = hack_script("plain-certs.py", "--overlay", str(copy / "overlays" / "plain"))
    assert result.returncode == 0, result.stderr
    return copy


@pytest.fixture(scope="session")
def rendered(manifests_copy: Path) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's documents as ``kubectl kustomize`` renders them."""
    return {name: kustomize(manifests_copy / "overlays" / name) for name in OVERLAYS}
