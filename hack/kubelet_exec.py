"""Start one container of the kubelet player inside a private mount namespace.

Run by the player as ``unshare --mount --propagation private -- python
hack/kubelet_exec.py SPEC.json``. It builds the container's root filesystem on a
fresh tmpfs (the "image": every top-level entry of the host's ``/``, or of a
given directory for an image such as a distroless one), bind-mounts each volume
at its real mount path (read-only where asked), then chroots, drops to the
container's uid/gid and execs the command. Nothing here runs a shell, so an
image holding a single static binary works.

Where a mount path's parent comes from the image (``/var/run/...``), that
directory is shadowed by a tmpfs holding binds of its entries before the mount
point is made: the host's own ``/var`` is never written to, as a container
runtime writes mount points only into the container's own layer.

Standard library only: it runs before the container exists, in any Python.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MAX_LINKS = 40

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: Path, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2); a failure names the target, as a container runtime's error would."""
    args = (source.encode(), str(target).encode(), fstype.encode() if fstype else None)
    if _libc.mount(*args, flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _replicate(entry: Path, into: Path) -> None:
    """Make ``into`` show ``entry``: a symlink copied, a directory or file bound."""
    if entry.is_symlink():
        into.symlink_to(os.readlink(entry))
    elif entry.is_dir():
        into.mkdir()
        _mount(str(entry), into, None, MS_BIND | MS_REC)
    elif entry.exists():
        into.touch()
        _mount(str(entry), into, None, MS_BIND)


def _populate(root: Path, source: Path) -> None:
    """Fill the tmpfs at ``root`` with the entries of ``source``."""
    for entry in sorted(source.iterdir()):
        _replicate(entry, root / entry.name)


class Rootfs:
    """The container's root under construction, and which of its dirs are its own."""

    def __init__(self, root: Path, image: Path) -> None:
        self.root = root
        self.image = image
        self.own: set[Path] = {root}
        _mount("tmpfs", root, "tmpfs", 0, "mode=0755")
        _populate(root, image)

    def resolve(self, target: str) -> list[str]:
        """The components of ``target`` with symlinks resolved inside this root."""
        todo = [part for part in target.split("/") if part]
        done: list[str] = []
        for _ in range(MAX_LINKS * 8):
            if not todo:
                return done
            part = todo.pop(0)
            here = self.root.joinpath(*done, part)
            if part == "..":
                done = done[:-1]
            elif part != "." and here.is_symlink():
                link = os.readlink(here)
                done = [] if link.startswith("/") else done
                todo = [p for p in link.split("/") if p] + todo
            elif part != ".":
                done.append(part)
        raise OSError(f"too many symbolic links in {target}")

    def make_dir(self, target: str) -> Path:
        """Create the mount point for ``target``, shadowing image dirs on the way."""
        parts = self.resolve(target)
        here = self.root
        for index, part in enumerate(parts):
            child = here / part
            if not child.exists():
                if here not in self.own:
                    self._shadow(here, parts[:index])
                child.mkdir(mode=0o755)
                self.own.add(child)
            here = child
        return here

    def _shadow(self, here: Path, parts: list[str]) -> None:
        _mount("tmpfs", here, "tmpfs", 0, "mode=0755")
        _populate(here, self.image.joinpath(*parts))
        self.own.add(here)

    def bind(self, source: str, target: str, *, read_only: bool) -> None:
        point = self.make_dir(target)
        _mount(source, point, None, MS_BIND | MS_REC)
        if read_only:
            _mount(source, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        self.own.add(point)


def enter(spec: dict[str, Any]) -> None:
    """Build the root, switch to it and to the container's user; exec the command."""
    rootfs = Rootfs(Path(spec["rootDir"]), Path(spec["image"]))
    for mount in sorted(spec["mounts"], key=lambda m: m["target"].count("/")):
        rootfs.bind(mount["source"], mount["target"], read_only=mount["readOnly"])
    os.chroot(rootfs.root)
    os.chdir(spec["workingDir"])
    if spec["gid"] is not None:
        os.setgroups(spec["groups"] or [])
        os.setgid(spec["gid"])
    if spec["uid"] is not None:
        os.setuid(spec["uid"])
    os.execvpe(spec["argv"][0], spec["argv"], spec["env"])  # noqa: S606 - no shell, by design


def main() -> int:
    spec_file = Path(sys.argv[1])
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    spec_file.unlink()
    # The player waits on this pipe: it closes at exec, so "running" means really running.
    os.set_inheritable(spec["syncFd"], False)
    try:
        enter(spec)
    except OSError as exc:
        # What a runtime reports as CreateContainerError: the cause, no traceback.
        print(f"kubelet: container {spec['name']}: {exc}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main())
