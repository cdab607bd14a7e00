"""The ``on-change`` actions the agent runs after a secret file really changed.

Two kinds: a signal to another container's main process, found through the
shared process namespace by the marker mount the webhook gives that container
(:data:`sidecar.config.SIGNAL_MARK_DIR`), and an empty POST to a localhost URL.
An action that fails is a problem to report, not a reason to stop keeping
secrets fresh, so nothing here raises: problems are logged and returned.
Logging goes through the agent's one JSON stream (:class:`sidecar.logs.Log`),
with names and URLs, never values.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from sidecar.config import SIGNAL_MARK_DIR, HttpAction, SignalAction
from sidecar.logs import Log


def run_actions(
    actions: Sequence[SignalAction | HttpAction],
    *,
    log: Log,
    proc: Path = Path("/proc"),
    mark_dir: PurePosixPath = SIGNAL_MARK_DIR,
    timeout: float = 5.0,
) -> list[str]:
    """Run every action in order; return (and log) one message per action that failed."""
    problems = []
    for action in actions:
        try:
            if isinstance(action, SignalAction):
                problem = _send_signal(action, log=log, proc=proc, mark_dir=mark_dir)
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


def _send_signal(
    action: SignalAction, *, log: Log, proc: Path, mark_dir: PurePosixPath
) -> str | None:
    try:
        signum = signal.Signals[action.signal]
    except KeyError:
        return f"signal {action.signal} to container {action.container}: no such signal"
    pid = main_process(action.container, proc=proc, mark_dir=mark_dir)
    if pid is None:
        return (
            f"signal {action.signal} to container {action.container}: no process of that "
            f"container is visible (is shareProcessNamespace set, and is "
            f"{mark_dir / action.container} mounted in it?)"
        )
    try:
        os.kill(pid, signum)
    except OSError as exc:
        return f"signal {action.signal} to container {action.container} (pid {pid}): {exc.strerror}"
    log.info("on-change signal sent", signal=action.signal, container=action.container, pid=pid)
    return None


def main_process(
    container: str, *, proc: Path = Path("/proc"), mark_dir: PurePosixPath = SIGNAL_MARK_DIR
) -> int | None:
    """The container's main process: the oldest one whose mounts hold the marker.

    Every process of the container shares its mount namespace, so the one that
    started first (lowest start time, then lowest pid) is the one the container
    runtime started. The mark's last three path components are compared: the
    runtime resolves symlinks in the image, so ``/var/run/latchkey.dev/...`` shows
    as ``/run/latchkey.dev/...`` where ``/var/run`` links to ``/run``.
    """
    marker = tuple(part.encode() for part in (mark_dir / container).parts[-3:])
    found = [(start, pid) for pid, start in _processes(proc) if _has_mount(proc, pid, marker)]
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


def _has_mount(proc: Path, pid: int, tail: tuple[bytes, ...]) -> bool:
    """Whether the process's mount namespace has a mount point ending in ``tail``.

    Field 5 of a mountinfo line is the mount point, relative to the process's root
    (so the container's own view); gone or unreadable processes have none.
    """
    try:
        mountinfo = (proc / str(pid) / "mountinfo").read_bytes()
    except OSError:
        return False
    for line in mountinfo.splitlines():
        fields = line.split(b" ")
        if len(fields) > 4 and tuple(fields[4].split(b"/")[-len(tail) :]) == tail:
            return True
    return False


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
