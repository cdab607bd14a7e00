"""Stopping the local servers that the demo, the tests and the benchmarks start."""

from __future__ import annotations

import subprocess


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
