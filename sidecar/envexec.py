"""Install the static env wrapper where the app containers can run it.

The wrapper (``sidecar/envexec.c``, built by ``make install`` into
``sidecar/bin/latchkey-env`` and shipped as package data) starts the app's
original command with the ``env-`` values set. It must come from the agent's
image, never the app's, so the agent copies it into a shared volume
(``latchkey-bin``) before the app starts. The env values themselves are written
by the agent with :func:`sidecar.render.env_file` and :mod:`sidecar.writer`.
"""

from __future__ import annotations

from pathlib import Path

from sidecar.config import WRAPPER_NAME
from sidecar.errors import ConfigError
from sidecar.writer import write_atomic

WRAPPER_MODE = 0o555


def wrapper_binary() -> Path:
    """Where the built wrapper ships: package data beside this module."""
    return Path(__file__).parent / "bin" / WRAPPER_NAME


def install_wrapper(dest_dir: Path) -> Path:
    """Copy the wrapper into ``dest_dir`` (atomically, mode 0555) and return its path.

    The rename means an app starting at that moment runs either no wrapper or
    the whole one, never a half-copied file (and never hits "text file busy").
    """
    source = wrapper_binary()
    try:
        content = source.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"the env wrapper {source} cannot be read ({exc.strerror}); "
            "build it with `make install` (needs a C compiler)"
        ) from exc
    dest = dest_dir / WRAPPER_NAME
    write_atomic(dest, content, mode=WRAPPER_MODE)
    return dest
