"""Starting and stopping the local servers that the demo, the tests and the benchmarks run."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

POLL = 0.05


def wait_ready(
    process: subprocess.Popen[bytes] | None,
    ready: Callable[[], bool],
    *,
    what: str,
    log_file: Path,
    timeout: float,
) -> None:
    """Poll ``ready`` until it holds; fail at once if ``process`` died, naming its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is None or process.poll() is not None:
            raise RuntimeError(f"{what} exited early; see {log_file}")
        try:
            if ready():
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL)
    raise RuntimeError(f"{what} was not ready in {timeout}s; see {log_file}")


def terminate(process: subprocess.Popen[bytes] | None, *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; a no-op when already gone."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
