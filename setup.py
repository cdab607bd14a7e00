"""The build hook: every install of latchkey (wheel, editable, image) carries the
static env wrapper, compiled from ``sidecar/envexec.c`` by the build itself.

Everything else about the package is declared in ``pyproject.toml``; this file
only adds the compile step to setuptools' ``build_py``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.errors import CompileError

SOURCE = Path("sidecar") / "envexec.c"
WRAPPER = Path("sidecar") / "bin" / "latchkey-env"
CFLAGS = ["-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror"]
NO_COMPILER = (
    "latchkey: the env wrapper ({source}) is compiled by the package build and needs a C "
    "compiler with a static libc, but `{cc}` was not found. Install one and build again "
    "(Debian/Ubuntu: apt-get install gcc libc6-dev; Alpine: apk add build-base), "
    "or set CC to the compiler to use."
)


def compile_wrapper(target: Path) -> None:
    """Compile the wrapper statically into ``target``, or fail the build saying why."""
    cc = shlex.split(os.environ.get("CC", "cc"))
    if not shutil.which(cc[0]):
        raise CompileError(NO_COMPILER.format(source=SOURCE, cc=cc[0]))
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [*cc, *CFLAGS, "-o", str(target), str(SOURCE)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CompileError(
            f"latchkey: compiling the env wrapper failed ({shlex.join(command)}); a static "
            f"libc is needed (Debian: libc6-dev). The compiler said:\n{result.stderr}"
        )


class BuildPyWithWrapper(build_py):
    """``build_py`` plus the wrapper: into the wheel, or into the checkout when editable."""

    def run(self) -> None:
        super().run()
        # An editable install imports `sidecar` from the checkout, so the wrapper
        # goes where the package data lives there.
        target = WRAPPER if self.editable_mode else Path(self.build_lib) / WRAPPER
        compile_wrapper(target)


setup(cmdclass={"build_py": BuildPyWithWrapper})
