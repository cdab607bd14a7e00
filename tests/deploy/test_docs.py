"""The YAML that docs/install.md tells users to write is accepted by what reads it."""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.deploy.tools import REPO
from webhook.settings import load_config

DOC = REPO / "docs" / "install.md"


def _yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def _block(first_line: str) -> str:
    matches = [b for b in _yaml_blocks() if b.startswith(first_line)]
    assert len(matches) == 1, f"one yaml block starting {first_line!r} in {DOC}"
    return matches[0]


def test_every_yaml_block_parses() -> None:
    blocks = _yaml_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        assert yaml.safe_load(block) is not None


def test_documented_webhook_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(_block("# my-latchkey/config.yaml"), encoding="utf-8")
    config = load_config(path)
    assert config.agent.image.endswith("latchkey-sidecar:0.1.0")


def test_documented_store_plan_loads(store_setup: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(_block("audience: openbao"), encoding="utf-8")
    (role,) = store_setup.load_plan(path).roles
    assert role.subject == "system:serviceaccount:shop:web"


@pytest.mark.parametrize(
    "name", ["hack/plain-certs.py", "hack/store-setup.py", "manifests/examples/store-setup.yaml"]
)
def test_named_files_exist(name: str) -> None:
    assert name in DOC.read_text(encoding="utf-8")
    assert (REPO / name).exists()


def test_the_readme_says_what_the_two_commands_install_and_that_apt_needs_root() -> None:
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    section = text.split("## Two commands", 1)[1].split("## Images", 1)[0]
    for package in ("gcc", "libc6-dev", "PostgreSQL", "podman", "runc", "debootstrap"):
        assert package in section, package
    assert "as root" in section
    assert "`make test` expects root" in section
