"""The atomic writer: modes, owner, no leftovers, and the old file kept on failure."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sidecar.errors import WriteError
from sidecar.writer import write_atomic

OLD = b"old-secret-value\n"
NEW = b"new-secret-value\n"
ROOT = os.geteuid() == 0


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("mode", [0o400, 0o440, 0o444, 0o600])
def test_mode_and_content_despite_umask(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "db"
    old_umask = os.umask(0o077)
    try:
        assert write_atomic(target, NEW, mode=mode) is True
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == NEW
    assert entries(tmp_path) == ["db"]


def test_unchanged_content_is_not_rewritten(tmp_path: Path) -> None:
    target = tmp_path / "db"
    assert write_atomic(target, OLD, mode=0o400) is True
    before = target.stat()
    assert write_atomic(target, OLD, mode=0o400) is False
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert write_atomic(target, NEW, mode=0o400) is True
    assert target.stat().st_ino != before.st_ino
    assert target.read_bytes() == NEW


def test_same_content_new_mode_is_rewritten(tmp_path: Path) -> None:
    target = tmp_path / "db"
    write_atomic(target, OLD, mode=0o400)
    assert write_atomic(target, OLD, mode=0o440) is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o440


def test_owner_given(tmp_path: Path) -> None:
    """As root the file goes to another uid/gid; as anyone else that is refused."""
    target = tmp_path / "db"
    other = (4321, 8765)
    if ROOT:
        assert write_atomic(target, NEW, mode=0o400, owner=other) is True
        st = target.stat()
        assert (st.st_uid, st.st_gid) == other
        assert write_atomic(target, NEW, mode=0o400, owner=other) is False
        assert write_atomic(target, NEW, mode=0o400, owner=(0, 0)) is True
        assert (target.stat().st_uid, target.stat().st_gid) == (0, 0)
    else:
        with pytest.raises(WriteError, match="db"):
            write_atomic(target, NEW, mode=0o400, owner=other)
        assert entries(tmp_path) == []


def test_own_owner_needs_no_privilege(tmp_path: Path) -> None:
    target = tmp_path / "db"
    me = (os.geteuid(), os.getegid())
    assert write_atomic(target, NEW, mode=0o400, owner=me) is True
    assert (target.stat().st_uid, target.stat().st_gid) == me


def test_temp_file_is_exclusive_and_never_wider_than_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content must not be readable by others even before the final chmod."""
    opened: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        opened.append((str(path), flags, mode))
        return real_open(path, flags, mode, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    write_atomic(tmp_path / "db", NEW, mode=0o444)
    created = [(p, f, m) for p, f, m in opened if f & os.O_CREAT]
    assert len(created) == 1
    path, flags, mode = created[0]
    assert Path(path).name.startswith(".db.tmp-")
    assert flags & os.O_EXCL
    assert mode & 0o077 == 0


def test_symlink_target_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(OLD)
    (tmp_path / "db").symlink_to(elsewhere)
    assert write_atomic(tmp_path / "db", NEW, mode=0o400) is True
    assert not (tmp_path / "db").is_symlink()
    assert (tmp_path / "db").read_bytes() == NEW
    assert elsewhere.read_bytes() == OLD


def test_missing_directory_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match=r"cannot write .*/nope/db: No such file"):
        write_atomic(tmp_path / "nope" / "db", NEW, mode=0o400)


def _failing(name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, f"injected {name} failure")

    return fail


@pytest.mark.parametrize("step", ["fchmod", "fsync", "replace"])
def test_failure_half_way_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    target = tmp_path / "db"
    write_atomic(target, OLD, mode=0o400)
    monkeypatch.setattr(os, step, _failing(step))
    with pytest.raises(WriteError) as info:
        write_atomic(target, NEW, mode=0o400)
    assert str(target) in str(info.value)
    assert b"secret-value" not in str(info.value).encode()
    monkeypatch.undo()
    assert target.read_bytes() == OLD
    assert stat.S_IMODE(target.stat().st_mode) == 0o400
    assert entries(tmp_path) == ["db"]


@pytest.fixture(params=["full-tmpfs", "file-size-limit"])
def small_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, int]]:
    """A directory where a 200 KB write fails for real, and the RLIMIT_FSIZE to use.

    ``full-tmpfs``: a 64 KiB tmpfs (ENOSPC) when this process may mount one (root),
    else the same as ``file-size-limit``: a plain directory and a 64 KiB
    file-size limit on the writing process (EFBIG).
    """
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "latchkey-test", str(mount_point)]
    mounted = (
        request.param == "full-tmpfs"
        and ROOT
        and subprocess.run(mount, capture_output=True, check=False).returncode == 0
    )
    yield mount_point, 0 if mounted else 64 * 1024
    if mounted:
        subprocess.run(["umount", str(mount_point)], check=True)


CHILD = """
import resource, signal, sys
from pathlib import Path
from sidecar.errors import WriteError
from sidecar.writer import write_atomic

limit = int(sys.argv[2])
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
try:
    write_atomic(Path(sys.argv[1]), b"N" * 200_000, mode=0o400)
except WriteError as exc:
    print(exc)
    sys.exit(exc.exit_code)
"""


def test_real_write_failure_keeps_old_file(small_dir: tuple[Path, int]) -> None:
    directory, limit = small_dir
    target = directory / "db"
    write_atomic(target, OLD, mode=0o400)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(target), str(limit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == WriteError.exit_code, child.stderr
    assert f"cannot write {target}" in child.stdout
    assert ("File too large" if limit else "No space left") in child.stdout
    assert target.read_bytes() == OLD
    assert entries(directory) == ["db"]
