"""Keep same-uid processes out of the agent's ``/proc/<pid>``.

With ``on-change: signal:<SIG>:<container>`` the pod shares one PID namespace
and the agent runs as the app's uid, so by default a shell in the app could read
the agent's ``/proc/<pid>/environ`` and walk its filesystem through
``/proc/<pid>/root``: the projected token, the state dir with the store token.
A non-dumpable process's ``/proc/<pid>`` entries belong to root, and a process
without ``CAP_SYS_PTRACE`` cannot open them or ptrace it, whatever its uid. The
agent still reads the app's ``/proc/<pid>/environ`` to find signal targets: the
app stays dumpable, only the agent is not.
"""

from __future__ import annotations

import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)`` on this process; False where that is not possible.

    ctypes is imported here, not at module level, and only on Linux: it costs
    about a millisecond, paid on every probe too. The flag lasts until the next
    ``execve``, so it must be set by the agent itself, first thing.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no libc with prctl in this process
        return False
