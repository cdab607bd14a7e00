"""on-change actions against real processes and a real local HTTP server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import ClassVar

import pytest

from hack.localstore import free_port
from sidecar.config import SIGNAL_MARK_DIR, HttpAction, SignalAction
from sidecar.logs import Log
from sidecar.onchange import main_process, run_actions
from tests.polling import wait_for


def quiet() -> Log:
    return Log(io.StringIO())


# The app: traps SIGHUP by writing its marker; with "spawn" it first starts a
# child in the same mount namespace (as a container's children are), which must
# not be the one signalled.
APP = """
import pathlib, signal, subprocess, sys, time
marker, ready, spawn = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "spawn"
signal.signal(signal.SIGHUP, lambda *_: marker.write_text("hup"))
child = None
if spawn:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[4], f"{marker}.child",
                              f"{ready}.child", "no", sys.argv[4]])
ready.write_text("ready")
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not pathlib.Path(f"{marker}.stop").exists():
    time.sleep(0.01)
if child:
    child.terminate()
"""


# A container's mount namespace with the webhook's mark mounted, as the runtime makes it.
IN_MARKED_NAMESPACE = (
    'mkdir -p "$1" && mount -t tmpfs -o size=4k,ro latchkey-mark "$1" && shift && exec "$@"'
)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """A running app process (and its child) in a mount namespace marked as a container
    with a unique name, under ``tmp_path / "marks"``."""
    container = f"app-{uuid.uuid4().hex[:8]}"
    marker, ready = tmp_path / "hup", tmp_path / "ready"
    mark = tmp_path / "marks" / container
    app = [sys.executable, "-c", APP, str(marker), str(ready), "spawn", APP]
    unshare = ["unshare", "--mount", "--propagation", "private", "--"]
    process = subprocess.Popen([*unshare, "sh", "-c", IN_MARKED_NAMESPACE, "sh", str(mark), *app])
    wait_for(lambda: ready.exists(), timeout=10)
    wait_for(lambda: Path(f"{ready}.child").exists(), timeout=10)
    yield container, process, marker
    Path(f"{marker}.stop").write_text("stop")
    process.wait(timeout=10)


def test_signal_reaches_the_main_process_not_its_child(
    app: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    container, process, marker = app
    marks = PurePosixPath(marker.parent / "marks")
    assert main_process(container, mark_dir=marks) == process.pid
    action = SignalAction(signal="SIGHUP", container=container)
    assert run_actions([action], log=quiet(), mark_dir=marks) == []
    wait_for(lambda: marker.exists(), timeout=10)
    time.sleep(0.1)
    assert not Path(f"{marker}.child").exists()
    assert process.poll() is None


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        pytest.param(
            SignalAction(signal="SIGHUP", container="ghost-c0ntainer"),
            "ghost-c0ntainer",
            id="no-process",
        ),
        pytest.param(
            SignalAction(signal="SIGNOPE", container="app"),
            "SIGNOPE to container app: no such signal",
            id="bad-signal",
        ),
    ],
)
def test_signal_problems_name_the_container(action: SignalAction, expected: str) -> None:
    problems = run_actions([action], log=quiet())
    assert len(problems) == 1
    assert expected in problems[0]


def _mountinfo(*mount_points: str) -> bytes:
    lines = [f"{20 + i} 1 0:{40 + i} / {p} ro,relatime - tmpfs tmpfs ro,size=4k" for i, p in
             enumerate(["/", "/proc", *mount_points])]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def _fake_process(proc: Path, pid: str, *, stat: str | None, mountinfo: bytes | None) -> None:
    entry = proc / pid
    entry.mkdir()
    if stat is not None:
        (entry / "stat").write_text(stat)
    if mountinfo is None:
        (entry / "mountinfo").mkdir()  # reading it fails, as for a process gone meanwhile
    else:
        (entry / "mountinfo").write_bytes(mountinfo)


def _stat(comm: str, start: int) -> str:
    fields = ["S", *["0"] * 18, str(start), "0", "0"]
    return f"1 ({comm}) {' '.join(fields)}\n"


def test_main_process_is_the_oldest_one_with_the_mark_mounted(tmp_path: Path) -> None:
    marked = _mountinfo("/data", f"{SIGNAL_MARK_DIR}/web")
    _fake_process(tmp_path, "100", stat=_stat("app", 500), mountinfo=marked)
    _fake_process(tmp_path, "101", stat=_stat("gone", 100), mountinfo=None)
    _fake_process(tmp_path, "102", stat=_stat("other", 50), mountinfo=_mountinfo(
        f"{SIGNAL_MARK_DIR}/webx"))  # fmt: skip
    _fake_process(tmp_path, "103", stat=None, mountinfo=marked)
    _fake_process(tmp_path, "104", stat=_stat("my (app) 2", 450), mountinfo=marked)
    _fake_process(tmp_path, "105", stat="garbage", mountinfo=marked)
    _fake_process(tmp_path, "106", stat=_stat("below", 10), mountinfo=_mountinfo(
        f"{SIGNAL_MARK_DIR}/web/sub", f"{SIGNAL_MARK_DIR}/web2"))  # fmt: skip
    # /var/run links to /run in most images: the runtime mounts at the resolved path.
    _fake_process(tmp_path, "107", stat=_stat("resolved", 40), mountinfo=_mountinfo(
        "/run/latchkey.dev/signal-target/api"))  # fmt: skip
    (tmp_path / "self").mkdir()
    assert main_process("web", proc=tmp_path) == 104
    assert main_process("webx", proc=tmp_path) == 102
    assert main_process("we", proc=tmp_path) is None
    assert main_process("api", proc=tmp_path) == 107


# --- http ---------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Answers POST /ok with 204, /slow after a second, anything else with 500."""

    seen: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append((self.command, self.path, body))
        if self.path.startswith("/slow"):
            time.sleep(1)
        self.send_response(204 if self.path.startswith("/ok") else 500)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def server() -> Iterator[tuple[int, list[tuple[str, str, bytes]]]]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    Recorder.seen = []
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield httpd.server_address[1], Recorder.seen
    httpd.shutdown()
    httpd.server_close()


def test_http_post_is_sent(server: tuple[int, list[tuple[str, str, bytes]]]) -> None:
    port, seen = server
    assert (
        run_actions([HttpAction(url=f"http://localhost:{port}/ok/reload?x=1")], log=quiet()) == []
    )
    assert seen == [("POST", "/ok/reload?x=1", b"")]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/fail", "HTTP 500", id="server-error"),
        pytest.param("/slow", "timed out", id="timeout"),
    ],
)
def test_http_problems_name_the_url(
    server: tuple[int, list[tuple[str, str, bytes]]], path: str, expected: str
) -> None:
    url = f"http://127.0.0.1:{server[0]}{path}"
    problems = run_actions([HttpAction(url=url)], log=quiet(), timeout=0.3)
    assert len(problems) == 1
    assert problems[0].startswith(f"POST {url}: ")
    assert expected in problems[0]


def test_http_closed_port_is_one_json_warning() -> None:
    url = f"http://localhost:{free_port()}/reload"  # nothing listens there
    stream = io.StringIO()
    problems = run_actions([HttpAction(url=url)], log=Log(stream))
    assert len(problems) == 1
    assert url in problems[0]
    assert "ConnectionRefusedError" in problems[0]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [
        {"ts": lines[0]["ts"], "level": "warning", "msg": "on-change action failed",
         "problem": problems[0]}
    ]  # fmt: skip


def test_successes_are_logged_as_json(server: tuple[int, list[tuple[str, str, bytes]]]) -> None:
    stream = io.StringIO()
    url = f"http://localhost:{server[0]}/ok"
    assert run_actions([HttpAction(url=url)], log=Log(stream)) == []
    [line] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (line["level"], line["msg"], line["url"], line["status"]) == (
        "info", "on-change POST sent", url, 204,
    )  # fmt: skip


def test_one_failure_does_not_stop_the_others(
    server: tuple[int, list[tuple[str, str, bytes]]],
) -> None:
    port, seen = server
    actions: list[SignalAction | HttpAction] = [
        HttpAction(url=f"http://localhost:{port}/fail"),
        SignalAction(signal="SIGHUP", container="ghost-c0ntainer"),
        HttpAction(url=f"http://localhost:{port}/ok"),
    ]
    problems = run_actions(actions, log=quiet())
    assert len(problems) == 2
    assert problems[0] == f"POST http://localhost:{port}/fail: HTTP 500 Internal Server Error"
    assert problems[1].startswith("signal SIGHUP to container ghost-c0ntainer: ")
    assert [path for _, path, _ in seen] == ["/fail", "/ok"]
