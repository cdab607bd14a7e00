"""Install the static env wrapper where the app containers can run it.

The wrapper (``sidecar/envexec.c``, compiled by the package build, see
``setup.py``, into ``sidecar/bin/latchkey-env`` as package data) starts the app's
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


def missing_wrapper_fix() -> str:
    """How to get the wrapper for the way this copy of the agent was installed."""
    package = Path(__file__).parent
    checkout = package.parent
    if (checkout / "setup.py").is_file() and (package / "envexec.c").is_file():
        return (
            f"rebuild it in the checkout with `make install` or `pip install -e {checkout}` "
            "(needs a C compiler and a static libc: apt-get install gcc libc6-dev)"
        )
    return (
        "this installation was built without it; reinstall latchkey from source with a C "
        "compiler and a static libc present (apt-get install gcc libc6-dev, then "
        "`pip install --force-reinstall --no-binary latchkey latchkey`), "
        "or run the latchkey-sidecar image, which carries it"
    )


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
            f"the env wrapper {source} cannot be read ({exc.strerror}); {missing_wrapper_fix()}"
        ) from exc
    dest = dest_dir / WRAPPER_NAME
    write_atomic(dest, content, mode=WRAPPER_MODE)
    return dest
