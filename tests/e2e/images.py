"""A distroless-style image for the player: a root directory holding one static binary.

It proves that env injection needs no shell: the root has no ``/bin/sh``, no
libc, nothing but ``/app``, which prints the variables named in its arguments
and says whether a shell exists. Compiled with ``cc -static`` (``make install``
needs the same compiler for the env wrapper).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    printf("shell: %s\n", access("/bin/sh", F_OK) == 0 ? "present" : "absent");
    for (int i = 1; i < argc; i++) {
        const char *value = getenv(argv[i]);
        printf("%s=%s\n", argv[i], value ? value : "(unset)");
    }
    return 0;
}
"""


def static_image(workdir: Path) -> Path:
    """A root directory whose only file is the static ``/app``; returns the root."""
    root = workdir / "distroless"
    root.mkdir(mode=0o755)
    source = workdir / "app.c"
    source.write_text(SOURCE, encoding="utf-8")
    subprocess.run(["cc", "-static", "-Os", "-o", str(root / "app"), str(source)], check=True)
    return root
