"""Secret files in every format, templates, and env vars for an app with no shell."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from hack.kubelet import Pod
from tests.e2e.conftest import SECRETS, Flow, app_pod, read
from tests.e2e.images import static_image

APP_STARTED = "app started"

pytestmark = pytest.mark.e2e


def sourced(played: Pod, name: str, variables: list[str]) -> list[str]:
    """What ``sh`` sees after sourcing a dotenv file: one value per variable."""
    script = f". {SECRETS}/{name} && " + " && ".join(f'printf "%s\\0" "${v}"' for v in variables)
    result = played.exec("app", ["sh", "-c", script])
    assert result.returncode == 0, result.stderr
    return result.stdout.split("\0")[:-1]


def started_pod(flow: Flow, annotations: dict[str, str]) -> Pod:
    pod = app_pod(
        {"latchkey.dev/role": flow.grant(), **annotations},
        command=["sh", "-c", f"echo {APP_STARTED}; exec sleep 60"],
    )
    played = flow.play(flow.admit(pod).pod)
    played.wait_ready(30)
    return played


def test_every_format_and_a_template(flow: Flow) -> None:
    db = flow.put("db", {
        "username": "app",
        "password": flow.value("pw") + " it's $HOME `x`",
        "note": flow.value("note") + "\nsecond line",
        "port": 5432,
    })  # fmt: skip
    path = flow.path("db")
    played = started_pod(flow, {
        "latchkey.dev/secret-db.json": path,
        "latchkey.dev/secret-db.yaml": path, "latchkey.dev/format-db.yaml": "yaml",
        "latchkey.dev/secret-db.env": path, "latchkey.dev/format-db.env": "env",
        "latchkey.dev/secret-db.sh": path, "latchkey.dev/format-db.sh": "dotenv",
        "latchkey.dev/secret-password": f"{path}#password",
        "latchkey.dev/secret-dsn": path,
        "latchkey.dev/template-dsn": "postgres://${username}:${password}@db:${port}/app",
    })  # fmt: skip
    assert json.loads(read(played, "db.json")) == db
    assert yaml.safe_load(read(played, "db.yaml")) == db
    env_lines = read(played, "db.env").splitlines()
    assert f"note={db['note'].replace(chr(10), chr(92) + 'n')}" in env_lines
    assert f"password={db['password']}" in env_lines
    assert sourced(played, "db.sh", ["username", "password", "note"]) == [
        "app", db["password"], db["note"],
    ]  # fmt: skip
    assert read(played, "password") == db["password"]
    assert read(played, "dsn") == f"postgres://app:{db['password']}@db:5432/app"
    modes = played.exec("app", ["stat", "-c", "%n %a %u", *(
        f"{SECRETS}/{n}" for n in ("db.json", "password", "dsn"))])  # fmt: skip
    assert [line.split()[1:] for line in modes.stdout.splitlines()] == [["400", "1000"]] * 3


def test_app_starts_with_its_files_already_there(flow: Flow) -> None:
    flow.put("api", {"key": flow.value("key")})
    pod = app_pod(
        {"latchkey.dev/role": flow.grant(), "latchkey.dev/secret-api": flow.path("api")},
        command=["sh", "-c", f"test -s {SECRETS}/api && echo present || echo missing; sleep 60"],
    )
    played = flow.play(flow.admit(pod).pod)
    played.wait_ready(30)
    deadline = time.monotonic() + 10
    while not played.logs("app") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert played.logs("app") == "present\n"


def test_env_vars_for_an_image_without_a_shell(flow: Flow, tmp_path: Path) -> None:
    api = flow.put("api", {"key": flow.value("key") + "\nwith a newline", "user": "svc"})
    pod = app_pod(
        {
            "latchkey.dev/role": flow.grant(),
            "latchkey.dev/env-API_KEY": f"{flow.path('api')}#key",
            "latchkey.dev/env-API_USER": f"{flow.path('api')}#user",
        },
        command=["/app", "API_KEY", "API_USER"],
        image="distroless-app",
    )
    admitted = flow.admit(pod).pod
    app = admitted["spec"]["containers"][0]
    assert app["command"][:3] == [
        "/var/run/latchkey.dev/bin/latchkey-env", "/var/run/latchkey.dev/bin/env", "--",
    ]  # fmt: skip
    played = flow.play(
        admitted, mode="namespace", images={"distroless-app": static_image(tmp_path)}
    )
    played.wait_ready(30)
    assert played.wait_exit("app") == 0
    output = played.logs("app")
    assert output.startswith("shell: absent\n")
    assert f"API_KEY={api['key']}\nAPI_USER=svc\n" in output


@pytest.mark.parametrize(
    ("annotation", "value", "expected"),
    [
        pytest.param("latchkey.dev/format-db.json", "toml", "format-db.json", id="bad-format"),
        pytest.param("latchkey.dev/refresh", "0s", "refresh", id="bad-refresh"),
        pytest.param("latchkey.dev/secert-db.json", "x", "secert-db.json", id="typo-in-key"),
    ],
)
def test_bad_annotations_are_denied_naming_them(
    flow: Flow, annotation: str, value: str, expected: str
) -> None:
    pod = app_pod(
        {"latchkey.dev/secret-db.json": flow.path("db"), annotation: value},
        command=["sh", "-c", "true"],
    )
    admission = flow.webhook.admit(pod, namespace=flow.namespace)
    assert not admission.allowed
    assert expected in admission.message
