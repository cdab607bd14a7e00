"""What the built images hold: each only what it needs, the wrapper static."""

from __future__ import annotations

import subprocess

import pytest

from hack.images import IMAGES, RUNTIME, ULIMITS
from tests.containers.conftest import Scene

PT_INTERP = 3


def _python_in(image: str, code: str) -> subprocess.CompletedProcess[str]:
    argv = ["podman", *RUNTIME, "run", "--rm", *ULIMITS, "--entrypoint", "python", image]
    return subprocess.run([*argv, "-c", code], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("image", "present", "absent"),
    [
        # The agent's start path is msgspec and the standard library (issue 13): the
        # webhook's pydantic and httpx are not in its image at all.
        pytest.param("sidecar", "botocore, msgspec, yaml", "fastapi, pydantic, httpx", id="agent"),
        pytest.param("webhook", "fastapi, uvicorn, webhook.settings", "botocore", id="webhook"),
    ],
)
def test_image_carries_only_its_own_stack(
    scene: Scene, image: str, present: str, absent: str
) -> None:
    assert _python_in(IMAGES[image], f"import {present}").returncode == 0
    for module in absent.split(", "):
        assert _python_in(IMAGES[image], f"import {module}").returncode != 0, module


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_entry_point_answers_help(scene: Scene, image: str) -> None:
    argv = ["podman", *RUNTIME, "run", "--rm", *ULIMITS, IMAGES[image], "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()


def test_wrapper_the_agent_copied_is_statically_linked(scene: Scene) -> None:
    elf = (scene.pod.volumes.dirs["latchkey-bin"] / "latchkey-env").read_bytes()
    assert elf[:6] == b"\x7fELF\x02\x01", "a 64-bit little-endian ELF file"
    offset = int.from_bytes(elf[0x20:0x28], "little")
    size, count = (int.from_bytes(elf[at : at + 2], "little") for at in (0x36, 0x38))
    kinds = (elf[offset + i * size : offset + i * size + 4] for i in range(count))
    assert PT_INTERP not in (int.from_bytes(kind, "little") for kind in kinds), "no loader"
