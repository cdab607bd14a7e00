"""Play the kubelet with a real container runtime: a mutated pod as one podman pod.

Where :mod:`hack.kubelet` runs containers as local processes, this runs them from
their images with podman (``--runtime runc``), translating what the kubelet and
the CRI would: each volume is a directory of :class:`hack.kubelet_volumes.Volumes`
(``emptyDir: {medium: Memory}`` a tmpfs, projected tokens minted by the test)
bind-mounted into every container that mounts it; the securityContext becomes
podman's flags (user and group, supplementary groups, read-only root, dropped
capabilities, no privilege escalation, the runtime's default seccomp profile);
init containers run to completion in order, a native sidecar (an init container
with ``restartPolicy: Always``) is started and its startupProbe awaited before the
next one, then the app containers start. The pod shares the host's network, so
a store on loopback is reachable as it would be through a Service.

Identity follows the kubelet: ``runAsUser``/``runAsGroup`` from the container,
else the pod, else the image's ``USER``; a uid with no group takes the image's
group for that uid (0 when the image does not know it), which is what podman's
``--user UID`` does too; ``fsGroup`` and ``supplementalGroups`` are added groups.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hack.images import RUNTIME, ULIMITS, podman
from hack.kubelet import PodFailed
from hack.kubelet_identity import Requested, requested
from hack.kubelet_volumes import Minter, Volumes


def user_flags(asked: Requested, image_user: str) -> list[str]:
    """podman's ``--user`` and ``--group-add`` for what the spec asks; podman fills the
    rest from the image as the kubelet's runtime does (see hack/kubelet_identity.py)."""
    flags = [f"--group-add={group}" for group in asked.groups]
    if asked.uid is None and asked.gid is None:
        return flags
    uid = asked.uid if asked.uid is not None else image_user.split(":")[0] or "0"
    user = f"{uid}:{asked.gid}" if asked.gid is not None else str(uid)
    return ["--user", user, *flags]


def security_flags(spec: dict[str, Any]) -> list[str]:
    """podman's flags for a container's securityContext (the pod-level user aside)."""
    ctx = spec.get("securityContext") or {}
    flags: list[str] = []
    if ctx.get("readOnlyRootFilesystem"):
        # podman would add its own tmpfs on /tmp and /run; the kubelet adds none.
        flags += ["--read-only", "--read-only-tmpfs=false"]
    caps = ctx.get("capabilities") or {}
    flags += [f"--cap-drop={cap}" for cap in caps.get("drop", [])]
    flags += [f"--cap-add={cap}" for cap in caps.get("add", [])]
    if ctx.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    return flags  # RuntimeDefault is podman's default profile


@dataclass
class PodmanPod:
    """One pod spec run as a podman pod. Start it, read logs, exec, stop."""

    pod: dict[str, Any]
    root: Path
    minter: Minter
    namespace: str = "default"
    images: dict[str, str] = field(default_factory=dict)
    on_event: Callable[[str], None] = print
    name: str = field(default_factory=lambda: "latchkey-" + secrets.token_hex(4))
    started: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec: dict[str, Any] = self.pod["spec"]
        meta = self.pod.get("metadata", {})
        pod_name = meta.get("name") or meta.get("generateName", "pod-") + secrets.token_hex(3)
        account = self.spec.get("serviceAccountName", "default")
        identity = (self.namespace, account, pod_name)
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        self.volumes = Volumes(
            self.root / "volumes", self.minter, self.on_event, identity, fs_group
        )
        self.pod_name = pod_name

    def container_name(self, name: str) -> str:
        return f"{self.name}-{name}"

    def start(self, timeout: float = 60) -> None:
        """Volumes, the pod, each init container in order, then the app containers."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "volumes").mkdir(mode=0o755, exist_ok=True)
        self.volumes.create(self.spec.get("volumes", []))
        podman("pod", "create", "--infra=false", "--name", self.name)
        for spec in self.spec.get("initContainers", []):
            if spec.get("restartPolicy") == "Always":
                self._run(spec, detach=True)
                self._await_startup(spec, timeout)
            else:
                self._run(spec, detach=False)
        for spec in self.spec["containers"]:
            self._run(spec, detach=True)

    def _image(self, spec: dict[str, Any]) -> str:
        return str(self.images.get(spec["image"], spec["image"]))

    def argv(self, spec: dict[str, Any]) -> list[str]:
        """The ``podman run`` arguments for one container of the pod."""
        image = self._image(spec)
        image_user = podman("image", "inspect", "--format", "{{.Config.User}}", image).strip()
        who = requested(self.spec, spec)
        if (spec.get("securityContext") or {}).get("runAsNonRoot") and (
            who.uid == 0 or (who.uid is None and image_user.split(":")[0] in ("", "0", "root"))
        ):
            raise PodFailed(f"container {spec['name']}: runAsNonRoot and the image runs as root")
        argv = [
            "--pod", self.name, "--name", self.container_name(spec["name"]),
            "--network", "host", "--hostname", self.pod_name, *ULIMITS,
            *user_flags(who, image_user),
            *security_flags(spec),
        ]  # fmt: skip
        for var in spec.get("env", []):
            argv += ["--env", f"{var['name']}={self._env_value(var)}"]
        for mount in spec.get("volumeMounts", []):
            source = self.volumes.dirs[mount["name"]] / mount.get("subPath", "")
            suffix = ":ro" if mount.get("readOnly") else ""
            argv += ["--volume", f"{source}:{mount['mountPath']}{suffix}"]
        if "workingDir" in spec:
            argv += ["--workdir", spec["workingDir"]]
        if "command" in spec:
            argv += ["--entrypoint", json.dumps(spec["command"])]
        return [*argv, image, *spec.get("args", [])]

    def _env_value(self, var: dict[str, Any]) -> str:
        if "value" in var:
            return str(var["value"])
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}
        path = var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        if path not in fields:
            raise PodFailed(f"env {var['name']}: only value and fieldRef of the pod are played")
        return str(fields[path])

    def _run(self, spec: dict[str, Any], *, detach: bool) -> None:
        name = spec["name"]
        self.on_event(f"container {name}: podman run {self._image(spec)}")
        self.started[name] = time.monotonic()
        argv = [*RUNTIME, "run", *(["--detach"] if detach else []), *self.argv(spec)]
        try:
            podman(*argv)
        except RuntimeError as exc:
            raise PodFailed(f"container {name} failed: {exc}\n{self.logs(name)}") from exc

    def _await_startup(self, spec: dict[str, Any], timeout: float) -> None:
        """Poll the sidecar's exec startupProbe, as the kubelet does before the next one."""
        name, probe = spec["name"], spec.get("startupProbe", {}).get("exec")
        deadline = time.monotonic() + timeout
        while probe and time.monotonic() < deadline:
            if self.state(name) != "running":
                raise PodFailed(f"sidecar {name} exited before it started:\n{self.logs(name)}")
            if self.exec(name, probe["command"]).returncode == 0:
                self.ready[name] = time.monotonic()
                self.on_event(f"container {name}: startup probe passed")
                return
            time.sleep(0.1)
        if probe:
            raise PodFailed(f"sidecar {name} did not start in {timeout}s:\n{self.logs(name)}")

    def exec(self, name: str, command: list[str]) -> subprocess.CompletedProcess[str]:
        argv = ["podman", *RUNTIME, "exec", self.container_name(name), *command]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)

    def state(self, name: str) -> str:
        fmt = "{{.State.Status}}"
        return podman("container", "inspect", "--format", fmt, self.container_name(name)).strip()

    def status(self, name: str) -> dict[str, list[str]]:
        """The host's ``/proc/PID/status`` of the container's main process, by field."""
        fmt = "{{.State.Pid}}"
        pid = podman("container", "inspect", "--format", fmt, self.container_name(name)).strip()
        lines = Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines()
        return {line.split(":")[0]: line.split(":")[1].split() for line in lines if ":" in line}

    def user(self, name: str) -> str:
        """``uid:gid:groups`` of the container's main process, as the kernel sees it."""
        fields = self.status(name)
        return f"{fields['Uid'][0]}:{fields['Gid'][0]}:{','.join(fields['Groups'])}"

    def logs(self, name: str) -> str:
        argv = ["podman", "logs", self.container_name(name)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.stdout + done.stderr

    def stop(self) -> None:
        """Remove the pod and its containers, then the volumes (tmpfs contents vanish)."""
        subprocess.run(
            ["podman", "pod", "rm", "--force", "--time", "5", self.name],
            capture_output=True, check=False,
        )  # fmt: skip
        self.volumes.close()
