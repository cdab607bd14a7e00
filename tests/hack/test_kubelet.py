"""The kubelet player on plain pods (``sh`` containers, emptyDir, a native sidecar).

Both modes run here: ``namespace`` (the tests run as root, as in CI) and
``rewrite``, which is what a user without root gets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hack.kubelet import Pod, PodFailed, issuer_minter
from hack.kubelet_proc import Mount, PathMap, expand
from hack.localstore import Issuer
from tests.e2e.conftest import SECRETS
from tests.e2e.images import static_image
from tests.polling import wait_for

MODES = [pytest.param("namespace", id="namespace"), pytest.param("rewrite", id="rewrite")]
STATE = "/var/run/latchkey.dev/state"
TOKEN_DIR = "/var/run/secrets/latchkey.dev/serviceaccount"


def sh(name: str, script: str, *mounts: tuple[str, str], **extra: Any) -> dict[str, Any]:
    volume_mounts = [{"name": vol, "mountPath": path} for vol, path in mounts]
    return {"name": name, "command": ["sh", "-c", script], "volumeMounts": volume_mounts, **extra}


def make_pod(*, init: list[dict[str, Any]], apps: list[dict[str, Any]]) -> dict[str, Any]:
    token = {
        "serviceAccountToken": {"audience": "openbao", "expirationSeconds": 600, "path": "token"}
    }
    return {
        "metadata": {"generateName": "web-", "annotations": {}},
        "spec": {
            "serviceAccountName": "web",
            "volumes": [
                {"name": "secrets", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                {"name": "state", "emptyDir": {"medium": "Memory"}},
                {"name": "token", "projected": {"sources": [token]}},
            ],
            "initContainers": init,
            "containers": apps,
        },
    }


def play(pod: dict[str, Any], root: Path, issuer: Issuer, mode: str, **kw: Any) -> Pod:
    return Pod(pod, root=root, minter=issuer_minter(issuer), namespace="demo", mode=mode, **kw)


@pytest.mark.parametrize("mode", MODES)
def test_init_output_reaches_app_through_shared_volume(
    pod_root: Path, issuer: Issuer, mode: str
) -> None:
    config = json.dumps({"secretsDir": SECRETS})
    pod = make_pod(
        init=[sh("writer", f"echo from-init > {SECRETS}/greeting", ("secrets", SECRETS))],
        apps=[sh("app", f'cat {SECRETS}/greeting; echo "$CFG"; sleep 30', ("secrets", SECRETS),
                 env=[{"name": "CFG", "value": config}])],
    )  # fmt: skip
    with play(pod, pod_root, issuer, mode) as played:
        played.start()
        played.wait_ready(20)
        wait_for(lambda: played.logs("app").count("\n") >= 2, timeout=10)
        lines = played.logs("app").splitlines()
    assert lines[0] == "from-init"
    shown = json.loads(lines[1])["secretsDir"]
    expected = SECRETS if mode == "namespace" else str(pod_root / "volumes" / "secrets")
    assert shown == expected
    assert f"containers run in {mode} mode" in played.logs("kubelet")


@pytest.mark.parametrize("mode", MODES)
def test_token_is_minted_for_the_pod_and_rotated(pod_root: Path, issuer: Issuer, mode: str) -> None:
    pod = make_pod(init=[], apps=[sh("agent", "sleep 30", ("token", TOKEN_DIR))])
    with play(pod, pod_root, issuer, mode) as played:
        played.start()
        played.wait_ready(20)
        first = played.exec("agent", ["cat", f"{TOKEN_DIR}/token"]).stdout
        played.rotate_token()
        second = played.exec("agent", ["cat", f"{TOKEN_DIR}/token"]).stdout
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["sub"] == "system:serviceaccount:demo:web"
    assert claims["aud"] == ["openbao"]
    assert claims["exp"] - claims["iat"] == 600
    assert second != first


@pytest.mark.parametrize("mode", MODES)
def test_native_sidecar_holds_the_app_until_its_startup_probe_passes(
    pod_root: Path, issuer: Issuer, mode: str
) -> None:
    probe = {"exec": {"command": ["test", "-f", f"{STATE}/ready"]}, "failureThreshold": 20}
    sidecar = sh("agent", f"sleep 0.6; touch {STATE}/ready; exec sleep 30", ("state", STATE),
                 restartPolicy="Always", startupProbe=probe)  # fmt: skip
    app = sh("app", f"test -f {STATE}/ready && echo gated; sleep 30", ("state", STATE))
    with play(make_pod(init=[sidecar], apps=[app]), pod_root, issuer, mode) as played:
        played.start()
        played.wait_ready(20)
        wait_for(lambda: "gated" in played.logs("app"), timeout=10)
        assert played.state("agent") == "running"
        pids = [c.process.pid for c in played.containers.values() if c.process]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    ("sidecar", "expected"),
    [
        pytest.param("exec sleep 30", "did not pass within 2s", id="probe-never-passes"),
        pytest.param("echo agent gave up; exit 4", "exited with code 4", id="exits-first"),
    ],
)
def test_sidecar_that_never_starts_fails_the_pod(
    pod_root: Path, issuer: Issuer, sidecar: str, expected: str
) -> None:
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}
    agent = sh("agent", sidecar, restartPolicy="Always", startupProbe=probe)
    with play(
        make_pod(init=[agent], apps=[sh("app", "sleep 30")]), pod_root, issuer, "namespace"
    ) as p:
        p.start()
        with pytest.raises(PodFailed, match=expected):
            p.wait_ready(20)
        assert p.state("app") == "waiting"


@pytest.mark.parametrize("mode", MODES)
def test_failing_init_stops_the_pod_with_its_last_lines(
    pod_root: Path, issuer: Issuer, mode: str
) -> None:
    script = "for i in $(seq 1 30); do echo line-$i; done; echo 'role denied' >&2; exit 3"
    pod = make_pod(init=[sh("latchkey-init", script)], apps=[sh("app", "echo started")])
    with play(pod, pod_root, issuer, mode) as played:
        played.start()
        with pytest.raises(PodFailed) as failed:
            played.wait_ready(20)
        assert played.state("app") == "waiting"
    message = str(failed.value)
    assert message.startswith("init container latchkey-init exited with code 3")
    assert message.endswith("role denied")
    assert "line-30" in message
    assert "line-5\n" not in message
    assert played.logs("app") == ""


def test_read_only_mount_is_read_only(pod_root: Path, issuer: Issuer) -> None:
    app = sh("app", f"touch {SECRETS}/x 2>&1; sleep 30")
    app["volumeMounts"] = [{"name": "secrets", "mountPath": SECRETS, "readOnly": True}]
    with play(make_pod(init=[], apps=[app]), pod_root, issuer, "namespace") as played:
        played.start()
        played.wait_ready(20)
        wait_for(lambda: "Read-only file system" in played.logs("app"), timeout=10)
    assert not (pod_root / "volumes" / "secrets" / "x").exists()


@pytest.mark.parametrize("mode", MODES)
def test_containers_run_as_their_uid(pod_root: Path, issuer: Issuer, mode: str) -> None:
    user = {"runAsUser": 1234, "runAsGroup": 2345}
    app = sh("app", f"id -u; id -g; touch {SECRETS}/mine; sleep 30", ("secrets", SECRETS),
             securityContext=user)  # fmt: skip
    with play(make_pod(init=[], apps=[app]), pod_root, issuer, mode) as played:
        played.start()
        played.wait_ready(20)
        wait_for(lambda: (pod_root / "volumes" / "secrets" / "mine").exists(), timeout=10)
        by_exec = played.exec("app", ["id", "-u"]).stdout.strip()
        owner = (pod_root / "volumes" / "secrets" / "mine").stat()
    assert played.logs("app").splitlines()[:2] == ["1234", "2345"]
    assert by_exec == "1234"
    assert (owner.st_uid, owner.st_gid) == (1234, 2345)


def test_unreachable_root_falls_back_to_root_with_a_notice(tmp_path: Path, issuer: Issuer) -> None:
    tmp_path.chmod(0o700)
    app = sh("app", "id -u", securityContext={"runAsUser": 1234})
    with play(make_pod(init=[], apps=[app]), tmp_path, issuer, "rewrite") as played:
        played.start()
        played.wait_ready(20)
        assert played.wait_exit("app") == 0
    assert played.logs("app").strip() == "0"
    assert "not reachable by other users" in played.logs("kubelet")


def test_app_image_without_shell(pod_root: Path, tmp_path: Path, issuer: Issuer) -> None:
    image = static_image(tmp_path)
    app = {"name": "app", "image": "distroless", "command": ["/app", "GREETING"],
           "env": [{"name": "GREETING", "value": "hello"}],
           "volumeMounts": [{"name": "state", "mountPath": STATE}]}  # fmt: skip
    pod = make_pod(init=[], apps=[app])
    with play(pod, pod_root, issuer, "namespace", images={"distroless": image}) as played:
        played.start()
        played.wait_ready(20)
        assert played.wait_exit("app") == 0
    assert played.logs("app").splitlines() == ["shell: absent", "GREETING=hello"]


def test_mount_points_are_never_made_on_the_host(pod_root: Path, issuer: Issuer) -> None:
    pod = make_pod(init=[], apps=[sh("app", f"ls -d {STATE} {TOKEN_DIR} /latchkey/x",
                                     ("state", STATE), ("token", TOKEN_DIR),
                                     ("secrets", "/latchkey/x"))])  # fmt: skip
    with play(pod, pod_root, issuer, "namespace") as played:
        played.start()
        played.wait_ready(20)
        assert played.wait_exit("app") == 0
    assert not Path("/latchkey").exists()
    assert not Path("/run/latchkey.dev").exists()
    assert not Path("/run/secrets/latchkey.dev").exists()


def test_container_without_command_is_refused(pod_root: Path, issuer: Issuer) -> None:
    app = {"name": "app", "image": "nginx"}
    with play(make_pod(init=[], apps=[app]), pod_root, issuer, "rewrite") as played:
        played.start()
        with pytest.raises(PodFailed, match="container app has no command"):
            played.wait_ready(20)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("/latchkey/secrets", "/v/s", id="exact"),
        pytest.param("/latchkey/secrets/db.json", "/v/s/db.json", id="below"),
        pytest.param('{"dir":"/latchkey/secrets"}', '{"dir":"/v/s"}', id="in-json"),
        pytest.param("/latchkey/secrets2", "/latchkey/secrets2", id="longer-name-untouched"),
        pytest.param("/latchkey/secrets/deep/x", "/v/deep/x", id="longest-mount-wins"),
        pytest.param("a=/latchkey/secrets:b", "a=/v/s:b", id="in-a-list"),
    ],
)
def test_path_map_rewrites_whole_mount_paths(text: str, expected: str) -> None:
    paths = PathMap(
        [Mount(Path("/v/s"), SECRETS, False), Mount(Path("/v/deep"), f"{SECRETS}/deep", False)]
    )
    assert paths.apply(text) == expected


@given(st.text(alphabet=st.characters(blacklist_characters="/")))
def test_path_map_leaves_text_without_paths_alone(text: str) -> None:
    assert PathMap([Mount(Path("/v/s"), SECRETS, False)]).apply(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("$(A)-x", "1-x", id="set"),
        pytest.param("$(B)", "$(B)", id="unset-kept"),
        pytest.param("$$(A)", "$(A)", id="escaped"),
        pytest.param("$A", "$A", id="shell-syntax-untouched"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "1"}) == expected
