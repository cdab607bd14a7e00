"""The env wrapper: installed by the agent, run for real with shell and non-shell apps."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar import envexec
from sidecar.config import WRAPPER_NAME
from sidecar.errors import ConfigError
from sidecar.render import env_file
from sidecar.writer import write_atomic

VALUES = {
    "DB_URL": "postgres://u:p@db/app?x=1&y=2",
    "MULTI": "line1\nline2=still-line2\n",
    "EQUALS": "==a=b==",
    "UNI": "ünï ✓ 日本",
    "EMPTY": "",
    "HOME": "overridden-home",
}


def _env_path(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / "env"
    write_atomic(path, env_file(values), mode=0o400)
    return path


def _run(wrapper: Path, env_path: Path, *command: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(wrapper), str(env_path), "--", *command],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/original-home"},
    )


def test_install_copies_the_wrapper_read_only_and_executable(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    dest = envexec.install_wrapper(tmp_path / "bin")
    assert dest == tmp_path / "bin" / WRAPPER_NAME
    assert stat.S_IMODE(dest.stat().st_mode) == 0o555
    assert dest.read_bytes() == envexec.wrapper_binary().read_bytes()
    inode = dest.stat().st_ino
    assert envexec.install_wrapper(tmp_path / "bin") == dest
    assert dest.stat().st_ino == inode
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == [WRAPPER_NAME]


def test_missing_binary_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envexec, "wrapper_binary", lambda: tmp_path / "no" / WRAPPER_NAME)
    with pytest.raises(ConfigError, match=r"env wrapper .*/no/latchkey-env .*make install"):
        envexec.install_wrapper(tmp_path)


@pytest.fixture
def wrapper_dir(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    return tmp_path


@pytest.mark.parametrize("name", sorted(VALUES))
def test_shell_child_sees_each_value(wrapper_dir: Path, name: str) -> None:
    wrapper = envexec.install_wrapper(wrapper_dir / "bin")
    result = _run(wrapper, _env_path(wrapper_dir, VALUES), "/bin/sh", "-c", f'printf %s "${name}"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == VALUES[name]


def test_non_shell_child_sees_every_value(wrapper_dir: Path) -> None:
    """``env`` (found on PATH, no shell involved) prints the environment it was given."""
    wrapper = envexec.install_wrapper(wrapper_dir / "bin")
    result = _run(wrapper, _env_path(wrapper_dir, VALUES), "env", "-0")
    assert result.returncode == 0, result.stderr
    seen = dict(rec.split("=", 1) for rec in result.stdout.decode().split("\0") if rec)
    assert {name: seen[name] for name in VALUES} == VALUES
    assert seen["PATH"] == "/usr/bin:/bin"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.dictionaries(
        st.from_regex(r"\ALK_[A-Z0-9_]{0,8}\Z"),
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\0"), max_size=30),
        max_size=5,
    )
)
def test_any_values_reach_the_child(wrapper_dir: Path, values: dict[str, str]) -> None:
    wrapper = envexec.install_wrapper(wrapper_dir / "bin")
    result = _run(wrapper, _env_path(wrapper_dir, values), "env", "-0")
    assert result.returncode == 0, result.stderr
    seen = dict(rec.split("=", 1) for rec in result.stdout.decode().split("\0") if rec)
    assert {name: seen[name] for name in values} == values


@pytest.mark.parametrize(
    ("make_env", "command", "code", "message"),
    [
        pytest.param(
            False, "env", 1, "cannot read env file: {env}: No such file", id="missing-env-file"
        ),
        pytest.param(True, "/no/such/app", 127, "cannot run: /no/such/app", id="missing-command"),
    ],
)
def test_wrapper_failures_name_the_file_never_a_value(
    wrapper_dir: Path, make_env: bool, command: str, code: int, message: str
) -> None:
    wrapper = envexec.install_wrapper(wrapper_dir / "bin")
    env_path = wrapper_dir / "env"
    if make_env:
        _env_path(wrapper_dir, VALUES)
    result = _run(wrapper, env_path, command)
    stderr = result.stderr.decode()
    assert result.returncode == code
    assert message.format(env=env_path) in stderr
    assert result.stdout == b""
    for value in VALUES.values():
        assert not value or value not in stderr


def test_wrapper_runs_with_an_empty_environment(wrapper_dir: Path) -> None:
    """Distroless apps may start with almost nothing set; the wrapper needs no PATH for /abs."""
    wrapper = envexec.install_wrapper(wrapper_dir / "bin")
    env_path = _env_path(wrapper_dir, {"ONLY": "one"})
    result = subprocess.run(
        [str(wrapper), str(env_path), "--", "/usr/bin/env"],
        capture_output=True,
        check=False,
        env={},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ONLY=one\n"
    assert os.access(wrapper, os.X_OK)
