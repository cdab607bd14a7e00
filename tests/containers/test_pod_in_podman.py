"""The demo pod, mutated by the webhook image, run from the real images in one podman pod."""

from __future__ import annotations

import json
import time
from typing import Any

from hack.images import IMAGES, podman
from tests.containers.conftest import SECRETS_DIR, Scene
from tests.kube import VERSIONS, validate
from tests.polling import wait_for

AGENT, APP = "latchkey-agent", "web"


def _inspect(scene: Scene, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = json.loads(
        podman("container", "inspect", scene.pod.container_name(name))
    )
    return found[0]


def test_webhook_image_answered_the_review_over_tls(scene: Scene) -> None:
    """The review went over HTTPS, checked against the CA and ``localhost``, to the image."""
    assert scene.admission.allowed
    assert scene.admission.patch, "the demo pod is mutated"
    assert scene.webhook.launcher[-1] == IMAGES["webhook"]
    with scene.webhook.client() as client:
        assert client.get("/healthz").status_code == 200
    for version in VERSIONS:
        assert validate(scene.admission.pod, version) == []


def test_images_run_as_their_non_root_users() -> None:
    for tag in IMAGES.values():
        user = podman("image", "inspect", "--format", "{{.Config.User}}", tag).strip()
        assert user == "65532:65532", f"{tag} runs as {user!r}"


def test_agent_runs_with_exactly_the_injected_security_context(scene: Scene) -> None:
    ctx = scene.container(AGENT)["securityContext"]
    host = _inspect(scene, AGENT)["HostConfig"]
    assert host["ReadonlyRootfs"] is ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    caps = scene.pod.status(AGENT)
    assert caps["CapEff"] == caps["CapPrm"] == caps["CapBnd"] == ["0000000000000000"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert "no-new-privileges" in host["SecurityOpt"]
    assert scene.pod.status(AGENT)["NoNewPrivs"] == ["1"]
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert scene.pod.status(AGENT)["Seccomp"] == ["2"], "filtered by the default profile"
    uid, gid = ctx["runAsUser"], ctx["runAsGroup"]
    assert scene.pod.user(AGENT).split(":")[:2] == [str(uid), str(gid)]
    assert uid != 0, "runAsNonRoot"


def test_volumes_are_memory_backed_and_the_app_never_mounts_the_store_token(
    scene: Scene,
) -> None:
    for name, volume in scene.pod.volumes.dirs.items():
        if "emptyDir" in next(v for v in scene.spec["volumes"] if v["name"] == name):
            assert volume in scene.pod.volumes.tmpfs, f"{name} is not a tmpfs"
    app_mounts = {m["Destination"] for m in _inspect(scene, APP)["Mounts"]}
    agent_token = next(
        m["mountPath"]
        for m in scene.container(AGENT)["volumeMounts"]
        if m["name"] == "latchkey-token"
    )
    assert agent_token not in app_mounts
    assert SECRETS_DIR in app_mounts


def test_files_are_written_with_the_apps_owner_and_mode(scene: Scene) -> None:
    secrets_dir = scene.pod.volumes.dirs["latchkey-secrets"]
    uid, gid = (scene.spec["securityContext"][k] for k in ("runAsUser", "runAsGroup"))
    names = sorted(p.name for p in secrets_dir.iterdir())
    assert names == ["db.env", "db.json", "dsn"]
    for name in names:
        info = (secrets_dir / name).stat()
        assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (uid, gid, oct(0o400))
    assert json.loads((secrets_dir / "db.json").read_text())["password"] == scene.values["password"]


def test_env_reaches_an_app_with_no_shell_and_no_libc(scene: Scene) -> None:
    wait_for(lambda: "API_KEY=" in scene.pod.logs(APP), timeout=20)
    log = scene.pod.logs(APP)
    assert "shell: absent" in log
    assert f"API_KEY={scene.values['api_key']}" in log
    command = scene.container(APP)["command"]
    assert command[0].endswith("/latchkey-env"), "started through the copied wrapper"


def test_rotated_secret_reaches_the_running_app(scene: Scene) -> None:
    rotated = "rotated-" + str(time.monotonic_ns())
    scene.openbao.put_kv2("demo/db", {"username": "app", "password": rotated})
    wait_for(lambda: rotated in scene.pod.logs(APP), timeout=30)
    assert scene.pod.state(APP) == scene.pod.state(AGENT) == "running"


def test_no_secret_value_in_the_agent_or_webhook_logs(scene: Scene) -> None:
    logs = scene.pod.logs(AGENT) + scene.webhook.log_file.read_text(encoding="utf-8")
    assert logs.strip(), "the agent and webhook log something"
    for value in scene.values.values():
        assert value not in logs
