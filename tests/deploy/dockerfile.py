"""Replaying a Dockerfile's build stage on this machine, without Docker.

Only what our own Dockerfiles use is understood: ``ARG``/``ENV`` (``NAME=value``),
``WORKDIR``, ``COPY`` from the build context and ``RUN`` in shell form, up to the
second ``FROM``. Running the real instructions, rather than a copy of them in the
test, means the test breaks when the Dockerfile does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# What .dockerignore keeps out of the context below the copied directories.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "bin")


@dataclass
class BuildStage:
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    base: str = ""


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in logical]


def build_stage(dockerfile: Path) -> BuildStage:
    """The first stage of ``dockerfile``."""
    stage = BuildStage()
    for instruction, rest in instructions(dockerfile.read_text(encoding="utf-8")):
        if instruction == "FROM":
            if stage.base:
                break
            stage.base = rest.split()[0]
        elif instruction in ("ARG", "ENV"):
            target = stage.args if instruction == "ARG" else stage.env
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                target[name] = value
        elif instruction == "COPY":
            *sources, dest = shlex.split(rest)
            assert not any(s.startswith("--") for s in sources), "only context copies are replayed"
            stage.copies.append((sources, dest))
        elif instruction == "RUN":
            stage.runs.append(rest)
    return stage


def replay(
    stage: BuildStage, *, context: Path, workdir: Path, args: dict[str, str], path: str
) -> None:
    """Copy the context into ``workdir`` and run every RUN there with ``args`` overriding ARGs.

    ``path`` is the PATH the commands see (it must give them ``python``). The image's
    ``PIP_NO_CACHE_DIR`` is dropped so pip may use this machine's cache.
    """
    for sources, dest in stage.copies:
        for source in sources:
            origin, target = context / source, workdir / dest
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=IGNORED, dirs_exist_ok=True)
            else:
                assert dest.endswith("/"), f"COPY {source} {dest}: only copies into a directory"
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {k: v for k, v in stage.env.items() if k != "PIP_NO_CACHE_DIR"}
    env |= stage.args | args | {"PATH": path}
    for command in stage.runs:
        result = subprocess.run(
            ["/bin/sh", "-c", command], cwd=workdir, env=env, capture_output=True, text=True,
            check=False, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, f"RUN {command}\n{result.stdout[-2000:]}{result.stderr}"
