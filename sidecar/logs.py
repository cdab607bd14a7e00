"""JSON log lines on stderr: one object per line, for the cluster's log pipeline.

Callers pass names (path, role, file, attempt, backoff), never values: nothing
here could tell a secret from a path, so nothing here tries to redact.
This is not :mod:`logging`: the agent has one stream and one format, and the
stdlib machinery would cost start-up time for no gain.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO


class Log:
    """Writes ``{"ts", "level", "msg", **fields}`` lines to one stream."""

    def __init__(self, stream: TextIO | None = None, *, debug: bool = False) -> None:
        self._stream = stream or sys.stderr
        self._debug = debug

    def _emit(self, level: str, msg: str, fields: dict[str, Any]) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "msg": msg, **fields}
        try:
            self._stream.write(json.dumps(record, default=str) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed stderr must not take the agent down

    def debug(self, msg: str, **fields: Any) -> None:
        if self._debug:
            self._emit("debug", msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit("info", msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._emit("warning", msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._emit("error", msg, fields)
