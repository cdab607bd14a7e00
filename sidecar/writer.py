"""Atomic file replacement: an app never sees a half-written or world-readable secret.

A file is written to a temp file in its own directory (same filesystem, so the
rename is atomic), created exclusively with its final mode, synced, then renamed
over the old one, and the directory is synced so the rename itself survives.
On any failure the temp file goes and the old file stays as it was; one left by a
killed run is removed at the next start (:func:`remove_stale_temps`). Unchanged
files are left alone so their mtime and inode do not churn and no on-change
action fires for nothing. This module knows nothing of secrets or formats.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from pathlib import Path

from sidecar.errors import WriteError

# What _create_temp names its files; a killed agent can leave one behind.
TEMP_NAME = re.compile(r"\..+\.tmp-[0-9a-f]{8}")
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
_TEMP_ATTEMPTS = 8


def write_atomic(
    path: Path, content: bytes, *, mode: int, owner: tuple[int, int] | None = None
) -> bool:
    """Make ``path`` hold ``content`` with ``mode`` (and ``owner``); True when it changed."""
    if _unchanged(path, content, mode=mode, owner=owner):
        return False
    temp: Path | None = None
    try:
        temp, fd = _create_temp(path, mode)
        _fill(fd, content, mode=mode, owner=owner)
        os.replace(temp, path)
        temp = None
        _sync_dir(path.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from exc
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    return True


def remove_stale_temps(directory: Path) -> list[str]:
    """Delete the temp files an earlier, killed run left in ``directory`` (they hold
    secret content) and return their names; call before the first write."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    except OSError as exc:
        raise WriteError(f"cannot list {directory}: {exc.strerror}") from exc
    for entry in entries:
        if TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise WriteError(f"cannot remove stale {entry.path}: {exc.strerror}") from exc
            removed.append(entry.name)
    return removed


def _unchanged(path: Path, content: bytes, *, mode: int, owner: tuple[int, int] | None) -> bool:
    """Whether ``path`` is already a regular file with this content, mode and owner."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as existing:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or stat.S_IMODE(st.st_mode) != mode
            or (owner is not None and (st.st_uid, st.st_gid) != owner)
            or st.st_size != len(content)
        ):
            return False
        return existing.read() == content


def _create_temp(path: Path, mode: int) -> tuple[Path, int]:
    """A new ``.name.tmp-XXXX`` beside ``path``, opened for writing with the final mode.

    O_EXCL refuses a file or symlink planted at that name; creating it with the
    final mode (never wider) means the content is never readable by others.
    """
    for _ in range(_TEMP_ATTEMPTS):
        temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
        try:
            return temp, os.open(temp, _CREATE_FLAGS, mode & 0o700)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(path.parent))


def _fill(fd: int, content: bytes, *, mode: int, owner: tuple[int, int] | None) -> None:
    """Write, set owner and exact mode (the umask may have cut it), sync, close."""
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        out.flush()
        if owner is not None:
            st = os.fstat(fd)
            if (st.st_uid, st.st_gid) != owner:
                os.fchown(fd, *owner)
        os.fchmod(fd, mode)
        os.fsync(fd)


def _sync_dir(directory: Path) -> None:
    """Persist the rename; some filesystems cannot sync a directory, which is fine."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
