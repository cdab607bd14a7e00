"""The ``on-change`` actions the agent runs after a secret file really changed.

Two kinds: a signal to another container's main process, found through the
shared process namespace by the marker env var the webhook sets on that
container, and an empty POST to a localhost URL. An action that fails is a
problem to report, not a reason to stop keeping secrets fresh, so nothing here
raises: problems are logged and returned. Logging goes through the agent's
one JSON stream (:class:`sidecar.logs.Log`), with names and URLs, never values.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from sidecar.config import SIGNAL_MARKER_ENV, HttpAction, SignalAction
from sidecar.logs import Log


def run_actions(
    actions: Sequence[SignalAction | HttpAction],
    *,
    log: Log,
    proc: Path = Path("/proc"),
    timeout: float = 5.0,
) -> list[str]:
    """Run every action in order; return (and log) one message per action that failed."""
    problems = []
    for action in actions:
        try:
            if isinstance(action, SignalAction):
                problem = _send_signal(action, log=log, proc=proc)
            else:
                problem = _post(action.url, log=log, timeout=timeout)
        except Exception as exc:  # "never raises": a bug here must not stop the agent
            problem = f"on-change {action.kind} action: unexpected {exc.__class__.__name__}"
            log.error("on-change action crashed", action=action.kind, error=repr(exc))
        if problem is not None:
            log.warning("on-change action failed", problem=problem)
            problems.append(problem)
    return problems


# --- signal:<SIG>:<container> ---------------------------------------------------------


def _send_signal(action: SignalAction, *, log: Log, proc: Path) -> str | None:
    try:
        signum = signal.Signals[action.signal]
    except KeyError:
        return f"signal {action.signal} to container {action.container}: no such signal"
    pid = main_process(action.container, proc=proc)
    if pid is None:
        return (
            f"signal {action.signal} to container {action.container}: no process of that "
            f"container is visible (is shareProcessNamespace set, and does the agent run "
            f"as the container's uid?)"
        )
    try:
        os.kill(pid, signum)
    except OSError as exc:
        return f"signal {action.signal} to container {action.container} (pid {pid}): {exc.strerror}"
    log.info("on-change signal sent", signal=action.signal, container=action.container, pid=pid)
    return None


def main_process(container: str, *, proc: Path = Path("/proc")) -> int | None:
    """The container's main process: the oldest one carrying the marker env var.

    Its children inherit the marker too, so the one that started first (lowest
    start time, then lowest pid) is the one the container runtime started.
    """
    marker = f"{SIGNAL_MARKER_ENV}={container}".encode()
    found = [(start, pid) for pid, start in _processes(proc) if _has_env(proc, pid, marker)]
    return min(found)[1] if found else None


def _processes(proc: Path) -> Iterator[tuple[int, int]]:
    """(pid, start time in clock ticks) of every process still there."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
            # Field 2 (comm) may hold spaces and parentheses; fields after it are plain.
            start = int(stat[stat.rindex(b")") + 2 :].split()[19])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not a process entry we understand
        yield int(entry.name), start


def _has_env(proc: Path, pid: int, marker: bytes) -> bool:
    """Whether the process's environment holds ``marker``; unreadable ones (other uids) do not."""
    try:
        environ = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return marker in environ.split(b"\0")


# --- http://localhost:<port>/<path> ---------------------------------------------------


def _post(url: str, *, log: Log, timeout: float) -> str | None:
    """An empty POST; anything but a 2xx answer is a problem naming the URL.

    ``http.client`` directly, not urllib: no proxy from the environment, no
    redirect following, and it is imported only by pods that use it.
    """
    import http.client  # here, not at the top: most agents never POST

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        conn.request("POST", target, body=b"", headers={"Content-Length": "0"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as exc:
        return f"POST {url}: {exc.__class__.__name__}: {exc}"
    finally:
        conn.close()
    if not 200 <= response.status < 300:
        return f"POST {url}: HTTP {response.status} {response.reason}"
    log.info("on-change POST sent", url=url, status=response.status)
    return None
