"""The exec probes the webhook wires up: ``latchkey-sidecar probe startup|liveness``.

They run every few seconds in every pod, so they import nothing heavy: plain
``json`` finds ``stateDir`` in ``LATCHKEY_CONFIG``, and the answer is a stat.
``startup`` passes once the agent wrote every file (``<stateDir>/ready``);
``liveness`` passes while the agent's loop touched ``<stateDir>/alive`` within
:data:`LIVENESS_WINDOW` seconds (it touches it every :data:`TICK` at most).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping

TICK = 10.0
LIVENESS_WINDOW = 3 * TICK
DEFAULT_STATE_DIR = "/var/run/latchkey.dev/state"  # sidecar.config.STATE_DIR, not imported


def state_dir(environ: Mapping[str, str]) -> str:
    """``stateDir`` from ``LATCHKEY_CONFIG``; the default when unset or unreadable."""
    try:
        config = json.loads(environ.get("LATCHKEY_CONFIG") or "{}")
        value = config.get("stateDir") if isinstance(config, dict) else None
    except ValueError:
        value = None
    return value if isinstance(value, str) and value else DEFAULT_STATE_DIR


def check(kind: str, directory: str, *, now: float | None = None) -> tuple[bool, str]:
    """Whether the probe passes, and one line saying why."""
    name = "ready" if kind == "startup" else "alive"
    path = os.path.join(directory, name)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return False, f"{kind}: {path} does not exist yet"
    if kind == "startup":
        return True, f"startup: {path} exists"
    age = (time.time() if now is None else now) - mtime
    if age > LIVENESS_WINDOW:
        return False, f"liveness: {path} is {age:.0f}s old (limit {LIVENESS_WINDOW:.0f}s)"
    return True, f"liveness: {path} is {age:.0f}s old"


def main(kind: str, environ: Mapping[str, str]) -> int:
    passed, message = check(kind, state_dir(environ))
    print(message)
    return 0 if passed else 1
