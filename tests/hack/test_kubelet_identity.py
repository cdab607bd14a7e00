"""The kubelet player's identity rules, row by row, each with its source in the
Kubernetes docs; then the rules as a running container of the player sees them."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod, issuer_minter
from hack.kubelet_identity import Identity, ImageUsers, resolve
from hack.localstore import Issuer
from tests.polling import wait_for

# An image whose /etc/passwd knows uid 1000 (primary group 1500) and whose /etc/group
# also lists that user in group 50000, as in the docs' example image.
IMAGE = ImageUsers(
    user=0, primary={0: 0, 1000: 1500}, names={0: "root", 1000: "app"},
    members={"app": (50000,)},
)  # fmt: skip
SECURITY_CONTEXT = "https://kubernetes.io/docs/tasks/configure-pod-container/security-context/"
GROUPS_POLICY = SECURITY_CONTEXT + "#supplementalgroupspolicy"
API_POD_SC = "https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#security-context"


def _pod(**ctx: Any) -> dict[str, Any]:
    return {"securityContext": ctx} if ctx else {}


def _container(**ctx: Any) -> dict[str, Any]:
    return {"name": "app", **({"securityContext": ctx} if ctx else {})}


# (pod securityContext, container securityContext, image, expected, source)
ROWS = [
    pytest.param(
        _pod(), _container(), IMAGE, Identity(0, 0, (0,)),
        f"{API_POD_SC} runAsUser: 'Defaults to user specified in image metadata if "
        "unspecified'; the player's images name no USER, so root",
        id="nothing-set-image-user",
    ),
    pytest.param(
        _pod(runAsUser=1000), _container(), IMAGE, Identity(1000, 1500, (1500, 50000)),
        f"{SECURITY_CONTEXT} 'If this field is omitted, the primary group ID of the containers "
        "will be root(0)' - when the image's /etc/passwd names the uid, the runtime takes its "
        "primary group from there (containerd and CRI-O: WithUserID reads the image's passwd)",
        id="uid-without-group-image-knows-it",
    ),
    pytest.param(
        _pod(runAsUser=2000), _container(), IMAGE, Identity(2000, 0, (0,)),
        f"{SECURITY_CONTEXT} 'If this field is omitted, the primary group ID of the "
        "containers will be root(0)'",
        id="uid-without-group-unknown-to-image",
    ),
    pytest.param(
        _pod(runAsUser=1000, runAsGroup=3000), _container(), IMAGE,
        Identity(1000, 3000, (3000, 50000)),
        f"{SECURITY_CONTEXT} 'runAsGroup field specifies the primary group ID of 3000 for all "
        "processes within any containers of the Pod'",
        id="pod-uid-and-group",
    ),
    pytest.param(
        _pod(runAsUser=1000, runAsGroup=3000), _container(runAsUser=1001, runAsGroup=0), IMAGE,
        Identity(1001, 0, (0,)),
        f"{SECURITY_CONTEXT}#set-the-security-context-for-a-container 'Security settings that "
        "you specify for a Container apply only to the individual Container, and they override "
        "settings made at the Pod level when there is overlap' (runAsGroup: 0 is a value, "
        "not unset)",
        id="container-overrides-pod-even-with-group-0",
    ),
    pytest.param(
        _pod(runAsGroup=3000), _container(), IMAGE, Identity(0, 3000, (3000,)),
        f"{API_POD_SC} runAsUser: 'Defaults to user specified in image metadata if unspecified'",
        id="group-without-uid-image-user",
    ),
    pytest.param(
        _pod(runAsUser=1000, runAsGroup=3000, fsGroup=2000), _container(), IMAGE,
        Identity(1000, 3000, (2000, 3000, 50000)),
        f"{SECURITY_CONTEXT} 'Since fsGroup field is specified, all processes of the container "
        "are also part of the supplementary group ID 2000'",
        id="fsgroup-is-a-supplementary-group",
    ),
    pytest.param(
        _pod(runAsUser=1000, runAsGroup=3000, supplementalGroups=[4000]), _container(), IMAGE,
        Identity(1000, 3000, (3000, 4000, 50000)),
        f"{GROUPS_POLICY} example output 'uid=1000 gid=3000 groups=3000,4000,50000': the "
        "primary gid, supplementalGroups, and the image's /etc/group memberships (Merge, the "
        "default)",
        id="supplemental-groups-merge",
    ),
    pytest.param(
        _pod(runAsUser=1000, runAsGroup=3000, supplementalGroups=[4000],
             supplementalGroupsPolicy="Strict"),
        _container(), IMAGE, Identity(1000, 3000, (3000, 4000)),
        f"{GROUPS_POLICY} 'Strict: Only group IDs in fsGroup, supplementalGroups, or runAsGroup "
        "fields are attached as the supplementary groups'",
        id="supplemental-groups-strict",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("pod", "container", "image", "expected", "source"), ROWS)
def test_identity_rule(
    pod: dict[str, Any], container: dict[str, Any], image: ImageUsers, expected: Identity,
    source: str,
) -> None:  # fmt: skip
    assert source.startswith("https://kubernetes.io/docs/")
    assert resolve(pod, container, image) == expected


def test_image_users_are_read_from_the_image_root(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1500::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1500:\nextra:x:50000:app,other\nbad-line\n")
    users = ImageUsers.of_root(tmp_path)
    assert users.primary == {0: 0, 1000: 1500}
    assert users.members == {"app": (50000,), "other": (50000,)}
    assert ImageUsers.of_root(tmp_path / "distroless") == ImageUsers()


# What a running container of the player is, from the kernel (/proc/PID/status): the
# table's rules carried into a process, in both of the player's modes. uid 1000 is in
# this machine's /etc/passwd (the player's image is the host root) with group 1000.
PLAYED = [
    pytest.param({"runAsUser": 4321}, {}, ("4321", "0", "0"), id="no-group-unknown-uid"),
    pytest.param({"runAsUser": 4321, "fsGroup": 2000, "supplementalGroups": [4000]},
                 {"runAsGroup": 0}, ("4321", "0", "0 2000 4000"), id="group-0-and-groups"),
    pytest.param({"runAsUser": 4321, "runAsGroup": 3000}, {"runAsGroup": 3100},
                 ("4321", "3100", "3100"), id="container-group-wins"),
]  # fmt: skip


@pytest.fixture
def reachable_root() -> Iterator[Path]:
    """A pod root other uids can reach: the rewrite mode switches users only then."""
    root = Path(tempfile.mkdtemp(prefix="latchkey-identity-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.mark.parametrize(("pod_ctx", "ctx", "expected"), PLAYED)
@pytest.mark.parametrize("mode", ["namespace", "rewrite"])
def test_played_container_has_the_resolved_identity(
    reachable_root: Path, issuer: Issuer, mode: str, pod_ctx: dict[str, Any], ctx: dict[str, Any],
    expected: tuple[str, str, str],
) -> None:  # fmt: skip
    app = {"name": "app", "command": ["sleep", "30"], "securityContext": ctx}
    pod = {"metadata": {"name": "who"}, "spec": {"securityContext": pod_ctx, "containers": [app]}}
    with Pod(pod, root=reachable_root / "pod", minter=issuer_minter(issuer), mode=mode) as played:
        played.start()
        played.wait_ready(20)
        process = played.containers["app"].process
        assert process is not None
        wait_for(lambda: _status(process.pid)["Uid"][0] == expected[0], timeout=10)
        status = _status(process.pid)
    assert (status["Uid"][0], status["Gid"][0], " ".join(status["Groups"])) == expected


def _status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines()
    return {line.split(":")[0]: line.split(":")[1].split() for line in lines if ":" in line}


@pytest.mark.parametrize("policy", ["Always", "OnRootMismatch"])
def test_fs_group_owns_the_empty_dirs_and_the_files_made_in_them(
    reachable_root: Path, issuer: Issuer, policy: str
) -> None:
    """SetVolumeOwnership: group fsGroup and setgid, so new files belong to fsGroup; on a
    new volume both change policies do the same."""
    app = {
        "name": "app", "command": ["sh", "-c", "touch /data/made && sleep 30"],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }  # fmt: skip
    ctx = {"runAsUser": 4321, "fsGroup": 2000, "fsGroupChangePolicy": policy}
    volume = {"name": "data", "emptyDir": {"medium": "Memory"}}
    spec = {"securityContext": ctx, "volumes": [volume], "containers": [app]}
    pod = {"metadata": {"name": "fs"}, "spec": spec}
    with Pod(pod, root=reachable_root / "pod", minter=issuer_minter(issuer)) as played:
        played.start()
        played.wait_ready(20)
        made = played.volumes.dirs["data"] / "made"
        wait_for(made.exists, timeout=10)
        directory = played.volumes.dirs["data"].stat()
        made_stat = made.stat()
    assert (directory.st_gid, oct(directory.st_mode & 0o7777)) == (2000, oct(0o2777))
    assert (made_stat.st_uid, made_stat.st_gid) == (4321, 2000)
