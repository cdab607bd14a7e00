"""Rendered overlays, built once per session."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.tools import MANIFESTS, admin_tool, kustomize

OVERLAYS = ["cert-manager", "plain"]


@pytest.fixture(scope="session")
def manifests_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of manifests/ with the plain overlay's certificates generated into it,
    so the working tree never gets key material from a test run."""
    copy = tmp_path_factory.mktemp("deploy") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("tls.*", "ca.crt", "ca-*"))
    result = admin_tool("certs", "--overlay", str(copy / "overlays" / "plain"))
    assert result.returncode == 0, result.stderr
    return copy


@pytest.fixture(scope="session")
def rendered(manifests_copy: Path) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's documents as ``kubectl kustomize`` renders them."""
    return {name: kustomize(manifests_copy / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def store_setup() -> ModuleType:
    """``latchkey-webhook store-setup``'s module, for its pure parts."""
    from webhook import store_setup

    return store_setup
