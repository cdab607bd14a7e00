"""``latchkey-sidecar``: the agent's command line, and the one place errors become exit codes.

    latchkey-sidecar [--once] [--deadline S] [--config FILE | flags...]
    latchkey-sidecar probe startup|liveness

Exit codes are :mod:`sidecar.errors`' (documented in docs/agent.md); a failure
prints one JSON log line naming the store, role, path or file, never a value.
Heavy imports (botocore, jinja2, prometheus_client) happen only on the paths that need
them: the probes run in every pod every few seconds, and start-up time is a feature.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping, Sequence

from sidecar.harden import make_undumpable

USAGE_EXIT = 2


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    # Before anything reads a token: keep the app's uid out of our /proc/<pid>
    # (environ, root/) when the pod shares its PID namespace. Probes too: they
    # run in the agent's container, so their /proc/<pid>/root is as good a door.
    undumpable = make_undumpable()
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv[:1] == ["probe"]:
        return _probe(argv[1:], environ)
    # Start-up (imports, building the config models) allocates much and frees
    # little: the cycle collector would only walk it again and again (~10 ms).
    # ``sidecar.cli.run`` turns it back on once that is over.
    gc.disable()
    from sidecar.errors import AgentError
    from sidecar.logs import Log

    log = Log()
    if not undumpable:
        log.warning("could not make the agent non-dumpable: same-uid processes can read its /proc")
    try:
        from sidecar.cli import run

        return run(argv, environ, log=log)
    except AgentError as exc:
        log.error(str(exc), error=type(exc).__name__, exit=exc.exit_code)
        return exc.exit_code
    finally:
        gc.enable()


def _probe(argv: list[str], environ: Mapping[str, str]) -> int:
    if len(argv) != 1 or argv[0] not in ("startup", "liveness"):
        print("usage: latchkey-sidecar probe startup|liveness", file=sys.stderr)
        return USAGE_EXIT
    from sidecar.probe import main as probe_main

    return probe_main(argv[0], environ)


if __name__ == "__main__":
    sys.exit(main())
