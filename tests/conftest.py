"""Fixtures shared by every test package: a real OpenBao and a token issuer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hack.localstore import Issuer, OpenBao


@pytest.fixture(scope="session")
def issuer() -> Issuer:
    """The stand-in for the cluster's service-account token issuer."""
    return Issuer()


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[OpenBao]:
    """One OpenBao dev server for the session, trusting ``issuer`` at auth mount ``jwt``,
    with KV v2 at ``secret/`` and KV v1 at ``kv/``. Tests that stop or restart the
    store start their own ``OpenBao`` instead."""
    server = OpenBao(tmp_path_factory.mktemp("openbao"))
    server.start()
    server.enable_jwt(issuer)
    server.enable_kv1()
    yield server
    server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
