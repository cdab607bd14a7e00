"""`pip install .` into a new virtual environment gives an agent whose env injection
works: the package build compiles the static wrapper (``setup.py``), so no Makefile
step is needed for a wheel or an editable install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.sidecar.agent_helpers import App, agent_env

REPO = Path(__file__).resolve().parents[2]
# What a source distribution holds; copied so the build leaves no trace in the checkout.
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "sidecar", "webhook"]


def _copy_source(source: Path) -> Path:
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("bin", "__pycache__")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    return source


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with ``pip install .`` of a copy of this checkout; returns its bin dir."""
    root = tmp_path_factory.mktemp("install")
    source = _copy_source(root / "src")
    venv.create(root / "venv", with_pip=True)
    pip = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    done = subprocess.run([*pip, str(source)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return root / "venv" / "bin"


def test_wrapper_ships_in_the_wheel(installed: Path) -> None:
    where = "import importlib.resources as r; print(r.files('sidecar') / 'bin' / 'latchkey-env')"
    found = subprocess.run(
        [str(installed / "python"), "-c", where],
        capture_output=True,
        text=True,
        check=True,
        cwd=installed,
    )
    wrapper = Path(found.stdout.strip())
    assert "site-packages" in wrapper.parts, "installed from the wheel, not the checkout"
    assert wrapper.is_file()


def test_installed_agent_injects_env_into_the_app(installed: Path, app: App) -> None:
    wrapper_dir = app.workdir / "bin"
    config = app.config(wrapperDir=str(wrapper_dir))
    done = subprocess.run(
        [str(installed / "latchkey-sidecar"), "--once"],
        env=agent_env(config), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    app.assert_no_value(done.stdout, done.stderr)
    shell = "/bin/sh", "-c", 'printf %s "$API_KEY"'
    seen = subprocess.run(
        [str(wrapper_dir / "latchkey-env"), config["envFile"], "--", *shell],
        capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert seen.returncode == 0, seen.stderr
    assert seen.stdout == app.values["api_key"]


def test_build_without_a_compiler_names_the_fix(tmp_path: Path) -> None:
    """The build hook fails the wheel build, saying what to install, when there is no cc."""
    source = _copy_source(tmp_path / "src")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path), str(source)]
    done = subprocess.run(
        build, capture_output=True, text=True, check=False, env=os.environ | {"CC": "no-such-cc"}
    )
    assert done.returncode != 0
    said = " ".join((done.stdout + done.stderr).split())
    assert "`no-such-cc` was not found" in said
    assert "apt-get install gcc libc6-dev" in said
    assert not list(tmp_path.glob("*.whl"))


@pytest.mark.parametrize("command", [["serve"], ["inject", "-f", "-"]])
def test_webhook_without_its_extra_says_which_to_install(
    installed: Path, command: list[str]
) -> None:
    """``pip install .`` gives the agent only: the webhook says so in one line, no traceback."""
    done = subprocess.run(
        [str(installed / "latchkey-webhook"), *command, "--config", "/nonexistent"],
        capture_output=True, text=True, check=False, input="", cwd=installed,
    )  # fmt: skip
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("latchkey-webhook: error: this needs the webhook extra")
    assert "no module fastapi, uvicorn" in line
    assert line.endswith("pip install 'latchkey[webhook]'")
    assert "Traceback" not in done.stderr
