"""One container of the kubelet player as a local process, in either of two modes.

``namespace`` (root with ``unshare`` and ``nsenter``): the process gets a
private mount namespace and its own root (see ``hack/kubelet_exec.py``) with
each volume bound at its real mount path, so the pod's paths are used as
written. ``rewrite`` (anywhere else): the process runs on this machine's
filesystem and every mount path in its command, args, env values (the agent's
``LATCHKEY_CONFIG`` JSON included) and working dir is rewritten to the volume's
directory. Both run as the container's ``runAsUser``/``runAsGroup`` when we are
root and that uid can reach the programs and volumes.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELPER = Path(__file__).with_name("kubelet_exec.py")
VENV_BIN = Path(sys.executable).parent
BASE_PATH = f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_TIMEOUT = 30
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class ContainerError(Exception):
    """The container cannot be started as the pod describes it."""


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion in command and args (``$$`` escapes)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return VAR_REF.sub(one, text)


def reachable_by_others(path: Path) -> bool:
    """Whether a non-root uid can reach ``path``: every parent searchable, the file readable."""
    real = path.resolve()
    parents_ok = all(os.stat(p).st_mode & 0o001 for p in real.parents)
    return parents_ok and bool(os.stat(real).st_mode & 0o005)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool


@dataclass
class PathMap:
    """Mount path -> directory, for the rewrite mode."""

    mounts: list[Mount]

    def apply(self, text: str) -> str:
        for mount in sorted(self.mounts, key=lambda m: -len(m.target)):
            pattern = re.escape(mount.target.rstrip("/")) + r"(?=$|[/\"'\s:,;=])"
            text = re.sub(pattern, str(mount.source).replace("\\", "\\\\"), text)
        return text


@dataclass
class Container:
    """A container's spec resolved against the pod: argv, env, mounts and user."""

    name: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    working_dir: str
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None = None
    image_root: Path = Path("/")
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def launch(self, *, mode: str, log: Path, spec_dir: Path) -> None:
        with log.open("ab") as out:
            if mode == "namespace":
                self.process = self._launch_namespace(out, spec_dir)
            else:
                self.process = self._launch_rewrite(out)

    def _launch_namespace(self, out: Any, spec_dir: Path) -> subprocess.Popen[bytes]:
        root_dir = spec_dir / f"{self.name}.root"
        root_dir.mkdir(exist_ok=True)
        spec_file = spec_dir / f"{self.name}.json"
        spec_file.touch(mode=0o600)
        argv = ["unshare", "--mount", "--propagation", "private", "--"]
        argv += [sys.executable, "-I", str(HELPER), str(spec_file)]
        sync_read, sync_write = os.pipe()
        spec_file.write_text(json.dumps(self._spec(root_dir, sync_write)), encoding="utf-8")
        try:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, start_new_session=True,
                pass_fds=[sync_write],
            )  # fmt: skip
        finally:
            os.close(sync_write)
        with os.fdopen(sync_read, "rb") as sync:
            select.select([sync], [], [], SETUP_TIMEOUT)  # EOF once the command is exec'd
        return process

    def _spec(self, root_dir: Path, sync_fd: int) -> dict[str, Any]:
        return {
            "name": self.name,
            "syncFd": sync_fd,
            "rootDir": str(root_dir),
            "image": str(self.image_root),
            "mounts": [
                {"source": str(m.source), "target": m.target, "readOnly": m.read_only}
                for m in self.mounts
            ],
            "uid": self.uid,
            "gid": self.gid,
            "groups": None if self.groups is None else list(self.groups),
            "workingDir": self.working_dir,
            "argv": self.argv,
            "env": self.env,
        }

    def _rewritten(self) -> tuple[list[str], dict[str, str], str]:
        paths = PathMap(self.mounts)
        env = {key: paths.apply(value) for key, value in self.env.items()}
        return [paths.apply(a) for a in self.argv], env, paths.apply(self.working_dir)

    def _launch_rewrite(self, out: Any) -> subprocess.Popen[bytes]:
        if self.image_root != Path("/"):
            raise ContainerError(f"container {self.name}: an image root needs the namespace mode")
        argv, env, cwd = self._rewritten()
        try:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, user=self.uid, group=self.gid,
                extra_groups=None if self.groups is None else list(self.groups),
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise ContainerError(f"container {self.name}: cannot run {argv[0]}: {exc}") from exc

    def exec_argv(self, argv: list[str], *, mode: str) -> tuple[list[str], dict[str, str]]:
        """The argv and env that run ``argv`` inside this running container."""
        if mode == "rewrite":
            paths = PathMap(self.mounts)
            return [paths.apply(a) for a in argv], self._rewritten()[1]
        if not self.running:
            raise ContainerError(f"container {self.name} is not running")
        assert self.process is not None
        enter = ["nsenter", "-t", str(self.process.pid), "-m", "-r", "-w"]
        if self.gid is not None:
            enter += ["-G", str(self.gid)]
        if self.uid is not None:
            enter += ["-S", str(self.uid)]
        return [*enter, "--", *argv], self.env

    def exec_user(self, mode: str) -> dict[str, Any]:
        """Popen keywords that switch user for an exec in the rewrite mode."""
        if mode != "rewrite":
            return {}
        return {"user": self.uid, "group": self.gid}

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float) -> None:
        """SIGTERM to the container's process group; SIGKILL whatever is left after ``grace``."""
        if self.process is None or self.process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                continue
        self.process.wait()
