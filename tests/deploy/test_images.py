"""The images: their Dockerfiles lint clean, and their build steps, replayed in a fresh
virtual environment, give working entry points (there is no Docker here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import build_stage, replay
from tests.deploy.tools import REPO, VENV_BIN

DOCKERFILES = ["Dockerfile.webhook", "Dockerfile.sidecar"]
# The image's own venv path (ARG VENV) is replaced by a temporary one.
IMAGE_VENV = "/opt/latchkey"
PT_INTERP = 3


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


@pytest.fixture(scope="module")
def python_shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose ``python`` is this machine's base interpreter, as in the image."""
    shim = tmp_path_factory.mktemp("shim")
    (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    return f"{shim}{os.pathsep}{os.environ['PATH']}"


def _build(dockerfile: str, tmp_path: Path, path: str) -> Path:
    stage = build_stage(REPO / dockerfile)
    assert stage.args["VENV"] == IMAGE_VENV
    assert f"COPY --from=build {IMAGE_VENV} {IMAGE_VENV}" in (REPO / dockerfile).read_text()
    venv = tmp_path / "venv"
    replay(stage, context=REPO, workdir=tmp_path / "src", args={"VENV": str(venv)}, path=path)
    return venv


def _python(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )


def _answers_help(executable: Path) -> None:
    result = subprocess.run(
        [str(executable), "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_webhook_image_install(tmp_path: Path, python_shim: str) -> None:
    venv = _build("Dockerfile.webhook", tmp_path, python_shim)
    _answers_help(venv / "bin" / "latchkey-webhook")
    assert _python(venv, "import fastapi, uvicorn, webhook.settings").returncode == 0


WRAPPER = "import importlib.resources as r; print(r.files('sidecar') / 'bin' / 'latchkey-env')"


def test_agent_image_install(tmp_path: Path, python_shim: str) -> None:
    venv = _build("Dockerfile.sidecar", tmp_path, python_shim)
    _answers_help(venv / "bin" / "latchkey-sidecar")
    assert _python(venv, "import botocore, httpx, pydantic, yaml").returncode == 0
    web = _python(venv, "import fastapi")
    assert web.returncode != 0, "the agent image must not carry the web stack"
    wrapper = Path(_python(venv, WRAPPER).stdout.strip())
    assert os.access(wrapper, os.X_OK), f"{wrapper} is missing or not executable"
    assert not _needs_loader(wrapper.read_bytes()), "distroless apps have no libc: link statically"


def _needs_loader(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF file has a PT_INTERP header (dynamic linking)."""
    assert elf[:6] == b"\x7fELF\x02\x01", "not a 64-bit little-endian ELF file"
    offset = int.from_bytes(elf[0x20:0x28], "little")
    size, count = (int.from_bytes(elf[at : at + 2], "little") for at in (0x36, 0x38))
    headers = (elf[offset + i * size : offset + i * size + 4] for i in range(count))
    return any(int.from_bytes(kind, "little") == PT_INTERP for kind in headers)
