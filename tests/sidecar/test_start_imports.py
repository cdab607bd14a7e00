"""No HTTP library on any store kind's path: ``vault``, ``gcp`` and ``azure`` speak
through the standard library (:mod:`sidecar.stores.https`), ``aws`` through botocore.
Checked in a fresh interpreter, since one test's imports would hide another's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.sidecar.agent_helpers import App, agent_env

HTTP_LIBRARIES = ("httpx", "httpcore")


@pytest.mark.parametrize("kind", ["vault", "gcp", "azure", "aws"])
def test_no_store_module_imports_an_http_library(kind: str) -> None:
    code = (
        f"import sys, sidecar.stores.{kind}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HTTP_LIBRARIES}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_vault_once_never_imports_an_http_library(app: App) -> None:
    """The whole run (config, login, reads, writes) under ``-X importtime``, so that an
    import made late, inside a function, shows too."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sidecar", "--once"],
        env=agent_env(app.config()), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"sidecar", "http", "ssl"} <= imported
    assert not imported & set(HTTP_LIBRARIES)
    assert app.file("password").read_text() == app.values["password"]
