"""Every branch of the README's "File ownership" table, played under the kubelet's
identity rules: who owns the files, their mode, and that each selected container
really reads them as the process the kubelet would start (its gid and groups)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.e2e.conftest import SECRETS, Flow
from tests.polling import wait_for

# Prints a digest of the file as this container's process reads it (never the value).
READ = ["sh", "-c", f"sha256sum < {SECRETS}/pw | cut -c1-64 || echo unreadable; sleep 60"]
AGENT_UID = 65532  # agent.runAsUser of the e2e webhook config


def _container(name: str, **ctx: Any) -> dict[str, Any]:
    container = {"name": name, "image": "busybox", "command": READ}
    return container | ({"securityContext": ctx} if ctx else {})


# (pod securityContext, containers, expected owner uid, gid, mode)
BRANCHES = [
    pytest.param({"runAsUser": 4321}, [_container("app")], (4321, 4321, 0o400),
                 id="one-uid-no-group-app-gid-0"),
    pytest.param({"runAsUser": 4321, "runAsGroup": 3000},
                 [_container("app", runAsGroup=3100), _container("web")], (4321, 3100, 0o400),
                 id="one-uid-container-group-over-pod-group"),
    pytest.param({}, [_container("app", runAsUser=4321, runAsGroup=0)], (4321, 0, 0o400),
                 id="one-uid-container-group-0"),
    pytest.param({"fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch"},
                 [_container("app", runAsUser=4321), _container("web", runAsUser=4322)],
                 (AGENT_UID, 2000, 0o440), id="two-uids-fsgroup-on-root-mismatch"),
    pytest.param({"fsGroup": 2000, "fsGroupChangePolicy": "Always"},
                 [_container("app", runAsUser=4321), _container("web")],
                 (AGENT_UID, 2000, 0o440), id="uid-unknown-fsgroup-always"),
]  # fmt: skip


@pytest.mark.e2e
@pytest.mark.parametrize(("context", "containers", "owner"), BRANCHES)
def test_every_selected_container_reads_its_files(
    flow: Flow, context: dict[str, Any], containers: list[dict[str, Any]],
    owner: tuple[int, int, int],
) -> None:  # fmt: skip
    value = flow.value("pw")
    flow.put("db", {"password": value})
    annotations = {
        "latchkey.dev/inject": "true",
        "latchkey.dev/role": flow.grant(),
        "latchkey.dev/secret-pw": f"{flow.path('db')}#password",
    }
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "own-", "annotations": annotations},
        "spec": {"serviceAccountName": "app", "securityContext": context,
                 "containers": containers},
    }  # fmt: skip
    played = flow.play(flow.admit(pod).pod)
    played.wait_ready(30)
    info = (played.volumes.dirs["latchkey-secrets"] / "pw").stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == owner
    digest = hashlib.sha256(value.encode()).hexdigest()
    names = [str(container["name"]) for container in containers]
    wait_for(lambda: all(played.logs(name).strip() for name in names), timeout=10)
    for name in names:
        assert played.logs(name).splitlines()[0] == digest, f"{name} cannot read its file"
