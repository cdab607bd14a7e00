"""One pass of the agent's work: fetch the paths, render every file, write what changed.

Both modes share it: ``--once`` runs :meth:`Agent.start` and exits, the
long-running loop (:mod:`sidecar.loop`) runs it first and then calls
:meth:`Agent.refresh` for the paths that are due. The set of files is written
only after every one of them rendered, so a bad key never leaves a half-updated
set behind. Scheduling and retries are not here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from sidecar.config import AgentConfig
from sidecar.errors import WriteError
from sidecar.logs import Log
from sidecar.render import env_file, env_value, render_file
from sidecar.stores.base import Secret, Store
from sidecar.writer import write_atomic

READY_FILE = "ready"
ALIVE_FILE = "alive"
DEFAULT_ENV_MODE = 0o440


class Agent:
    """Holds the last good secrets and turns them into files."""

    def __init__(self, config: AgentConfig, store: Store, *, log: Log, workers: int = 8) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.workers = workers
        self.secrets: dict[str, Secret] = {}
        self.secrets_dir = Path(config.secrets_dir)
        self.state_dir = Path(config.state_dir)

    @property
    def paths(self) -> tuple[str, ...]:
        """Every distinct store path, in config order (many files may share one)."""
        wanted = [f.path for f in self.config.files] + [e.path for e in self.config.env]
        return tuple(dict.fromkeys(wanted))

    def start(self) -> None:
        """The first complete write: wrapper, files, env file, then ``ready``."""
        started = time.monotonic()
        if self.config.wrapper_dir:
            from sidecar.envexec import install_wrapper

            install_wrapper(_directory(self.config.wrapper_dir))
        self.store.maintain()  # logs in unless a login from a failed attempt still holds
        self.refresh(self.paths)
        self.mark(READY_FILE)
        elapsed = round(time.monotonic() - started, 3)
        self.log.info("secrets written", files=len(self.config.files), seconds=elapsed)

    def refresh(self, paths: Iterable[str]) -> list[str]:
        """Read ``paths`` again and rewrite what changed; the names of changed files."""
        fetched = self.fetch(tuple(paths))
        secrets = {**self.secrets, **fetched}
        changed = self.write(secrets, touched=set(fetched))
        self.secrets = secrets
        return changed

    def fetch(self, paths: tuple[str, ...]) -> dict[str, Secret]:
        """Read every path, concurrently when there are several; the first error wins."""
        if len(paths) <= 1:
            return {path: self.store.read(path) for path in paths}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(self.workers, len(paths))) as pool:
            futures = [pool.submit(self.store.read, path) for path in paths]
            return {path: future.result() for path, future in zip(paths, futures, strict=True)}

    def write(self, secrets: Mapping[str, Secret], *, touched: set[str]) -> list[str]:
        """Render everything that depends on ``touched`` paths, then write it all."""
        outputs = [
            (self.secrets_dir / spec.name, render_file(spec, secrets[spec.path]), spec.mode)
            for spec in self.config.files
            if spec.path in touched
        ]
        if self.config.env_file and any(e.path in touched for e in self.config.env):
            values = {e.name: env_value(e, secrets[e.path]) for e in self.config.env}
            env_path = (
                _directory(Path(self.config.env_file).parent) / Path(self.config.env_file).name
            )
            outputs.append((env_path, env_file(values), self._env_mode()))
        _directory(self.secrets_dir)
        changed = []
        for path, content, mode in outputs:
            if write_atomic(path, content, mode=mode):
                changed.append(path.name)
                self.log.debug("file written", file=str(path), mode=f"{mode:04o}")
        return changed

    def _env_mode(self) -> int:
        """The env file is read by the app's uid like the files: take their loosest mode."""
        modes = [spec.mode for spec in self.config.files]
        return max(modes, key=lambda m: bin(m).count("1")) if modes else DEFAULT_ENV_MODE

    def mark(self, name: str) -> None:
        """Touch a state file the probes look at (``ready``, ``alive``)."""
        path = _directory(self.state_dir) / name
        try:
            path.touch()
            os.utime(path)
        except OSError as exc:
            raise WriteError(f"cannot touch state file {path}: {exc.strerror}") from exc


def _directory(path: str | Path) -> Path:
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {directory}: {exc.strerror}") from exc
    return directory
