"""One pass of the agent's work: fetch the paths, render every file, write what changed.

Both modes share it: ``--once`` runs :meth:`Agent.start` and exits, the
long-running loop (:mod:`sidecar.loop`) runs it first and then calls
:meth:`Agent.refresh` for the paths that are due. The set of files is written
only after every one of them rendered, so a bad key never leaves a half-updated
set behind. Scheduling and retries are not here.

Leases are saved in ``stateDir`` (:mod:`sidecar.state`: ids and expiry, never
values) so that a long-running agent adopts the leases an earlier run got under
the same store token (the init step's, or its own before a restart) instead of
reading those dynamic secrets a second time. An adopted path has no fields in
memory: its files stay as written until the lease ends and the path is read again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from sidecar.config import AgentConfig, CertificateFile
from sidecar.errors import WriteError
from sidecar.logs import Log
from sidecar.render import env_file, env_value, render_file, rendered_file
from sidecar.state import StateDir
from sidecar.stores.base import MAX_READERS, Secret, Store
from sidecar.writer import remove_stale_temps, write_atomic

READY_FILE = "ready"
ALIVE_FILE = "alive"
DEFAULT_ENV_MODE = 0o440
PATHS_PER_WORKER = 4


class Agent:
    """Holds the last good secrets and turns them into files."""

    def __init__(self, config: AgentConfig, store: Store, *, log: Log) -> None:
        self.config = config
        self.store = store
        self.log = log
        self.secrets: dict[str, Secret] = {}
        self.secrets_dir = Path(config.secrets_dir)
        self.state_dir = Path(config.state_dir)
        self.state = StateDir(config.state_dir, log=log)
        self.adopted: set[str] = set()
        self.login_due = float("inf")  # when the store wants maintain() called next
        # Derived once from the (immutable) config, not on every refresh.
        self._certificates = {c.key: c for c in config.certificates}
        named = {f.name: (f.path, f.key) for f in config.files}
        self._named = named | {s.name: (s.path, s.key) for s in config.sources}
        self._render_paths = {r.name: {self._named[n][0] for n in r.uses} for r in config.renders}

    @property
    def paths(self) -> tuple[str, ...]:
        """Every distinct store path, in config order (many files may share one)."""
        wanted = [f.path for f in self.config.files] + [e.path for e in self.config.env]
        wanted += [source.path for source in self.config.sources]
        wanted += [certificate.key for certificate in self.config.certificates]
        return tuple(dict.fromkeys(wanted))

    def start(self, *, adopt: bool = False) -> None:
        """The first complete write: wrapper, files, env file, then ``ready``.

        With ``adopt``, paths whose leases an earlier run left (see the module
        docstring) are not read again.
        """
        started = time.monotonic()
        self._remove_stale_temps()
        if self.config.wrapper_dir:
            from sidecar.envexec import install_wrapper

            install_wrapper(_directory(self.config.wrapper_dir))
        # Logs in (or adopts a saved login) unless one still holds.
        self.login_due = self.store.maintain()
        adopted = self.adopt_leases() if adopt else set()
        self.refresh(p for p in self.paths if p not in adopted)
        self.mark(READY_FILE)
        elapsed = round(time.monotonic() - started, 3)
        self.log.info("secrets written", files=len(self.config.files), seconds=elapsed)

    def _remove_stale_temps(self) -> None:
        """A run killed mid-write leaves a temp copy of a secret: none survives a start."""
        directories = {self.secrets_dir, self.state_dir}
        directories |= {Path(d) for d in (self.config.wrapper_dir,) if d}
        if self.config.env_file:
            directories.add(Path(self.config.env_file).parent)
        for directory in sorted(directories):
            if removed := remove_stale_temps(directory):
                self.log.info("stale temp files removed", dir=str(directory), files=len(removed))

    def adopt_leases(self) -> set[str]:
        """Leased paths an earlier run read under this very store login and wrote out."""
        leases = self.state.load_leases(self.store.accessor)
        for path, lease in leases.items():
            if path in self.paths and self._written(path):
                self.secrets[path] = Secret(path, {}, lease)
                self.adopted.add(path)
        if self.adopted:
            self.log.info("leases from the last run adopted", paths=sorted(self.adopted))
        return set(self.adopted)

    def _written(self, path: str) -> bool:
        files = [self.secrets_dir / f.name for f in self.config.files if f.path == path]
        if certificate := self._certificates.get(path):
            files += [self.secrets_dir / name for name in certificate.files]
        if self.config.env_file and any(e.path == path for e in self.config.env):
            files.append(Path(self.config.env_file))
        return all(f.exists() for f in files)

    def refresh(self, paths: Iterable[str]) -> list[str]:
        """Read ``paths`` again and rewrite what changed; the names of changed files."""
        wanted = tuple(paths)
        if any(e.path in wanted for e in self.config.env):
            # The env file is rendered whole: adopted paths in it need their fields now.
            wanted += tuple(
                dict.fromkeys(e.path for e in self.config.env if e.path in self.adopted)
            )
        for used in self._render_paths.values():
            if used & set(wanted):  # rendered whole: adopted paths in it need their fields
                wanted += tuple(p for p in used if p in self.adopted)
        fetched = self.fetch(tuple(dict.fromkeys(wanted)))
        secrets = {**self.secrets, **fetched}
        changed = self.write(secrets, touched=set(fetched))
        self.secrets = secrets
        self.adopted -= set(fetched)
        if any(s.lease for s in fetched.values()):
            self.save_leases()
        return changed

    def save_leases(self) -> None:
        """Remember the leases held (ids and expiry only) for a restart to adopt."""
        leases = {p: s.lease for p, s in self.secrets.items() if s.lease is not None}
        self.state.save_leases(self.store.accessor, leases)

    def fetch(self, paths: tuple[str, ...]) -> dict[str, Secret]:
        """Read every path, concurrently when there are several; the first error wins.

        A thread per :data:`PATHS_PER_WORKER` paths, up to :data:`MAX_READERS`: each new
        connection costs a TLS handshake, which a few reads do not pay back.
        """
        workers = min(MAX_READERS, len(paths) // PATHS_PER_WORKER)
        if workers <= 1:
            return {path: self._get(path) for path in paths}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self._get, path) for path in paths]
            return {path: future.result() for path, future in zip(paths, futures, strict=True)}

    def _get(self, path: str) -> Secret:
        """A read, or for a certificate's key the write that issues it."""
        certificate = self._certificates.get(path)
        if certificate is None:
            return self.store.read(path)
        return self.store.issue(certificate.path, certificate.params)

    def write(self, secrets: Mapping[str, Secret], *, touched: set[str]) -> list[str]:
        """Render everything that depends on ``touched`` paths, then write it all."""
        outputs = [
            (self.secrets_dir / spec.name, render_file(spec, secrets[spec.path]), spec.mode)
            for spec in self.config.files
            if spec.path in touched
        ]
        for certificate in self.config.certificates:
            if certificate.key in touched:
                outputs += _certificate_files(
                    self.secrets_dir, certificate, secrets[certificate.key]
                )
        for render in self.config.renders:
            if self._render_paths[render.name] & touched:
                used = {
                    name: (secrets[self._named[name][0]], self._named[name][1])
                    for name in render.uses
                }
                outputs.append(
                    (self.secrets_dir / render.name, rendered_file(render, used), render.mode)
                )
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
            path.touch()  # creates it, or sets its mtime to now
        except OSError as exc:
            raise WriteError(f"cannot touch state file {path}: {exc.strerror}") from exc


def _certificate_files(
    directory: Path, certificate: CertificateFile, secret: Secret
) -> list[tuple[Path, bytes, int]]:
    """The certificate, its key and the CA chain that signed it, as PEM files."""
    fields = secret.fields
    chain = fields.get("ca_chain") or [fields.get("issuing_ca", "")]
    pems = [fields["certificate"], fields["private_key"], "\n".join(str(c) for c in chain)]
    return [
        (directory / name, (pem.strip() + "\n").encode(), certificate.mode)
        for name, pem in zip(certificate.files, pems, strict=True)
    ]


def _directory(path: str | Path) -> Path:
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot create directory {directory}: {exc.strerror}") from exc
    return directory
