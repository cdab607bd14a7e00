"""Rendered overlays, built once per session."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.deploy.tools import MANIFESTS, REPO, hack_script, kustomize

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


@pytest.fixture(scope="session")
def store_setup() -> ModuleType:
    """hack/store-setup.py as a module (its file name has a dash), for its pure parts."""
    spec = importlib.util.spec_from_file_location("store_setup", REPO / "hack" / "store-setup.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' annotations through it
    spec.loader.exec_module(module)
    return module
