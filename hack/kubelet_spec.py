"""From a pod's container spec to a :class:`Container` the player can start.

What a kubelet and a container runtime resolve before a process exists: the
env (``value`` and the ``fieldRef`` names a pod can know about itself), ``$(VAR)``
expansion in command and args, each volume mount's directory, and the user by
the kubelet's rules (:mod:`hack.kubelet_identity`), with a notice when this
machine cannot switch to it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.kubelet_identity import ImageUsers, resolve
from hack.kubelet_proc import BASE_PATH, Container, ContainerError, Mount, expand
from hack.kubelet_proc import reachable_by_others as reachable


@dataclass(frozen=True)
class SpecReader:
    """Everything about the pod that a container's spec is resolved against."""

    pod_spec: dict[str, Any]
    pod_name: str
    namespace: str
    mode: str
    root: Path
    volume_dirs: dict[str, Path]
    images: dict[str, Path]
    notice: Callable[[str], None]

    def container(self, spec: dict[str, Any]) -> Container:
        name = spec["name"]
        env = {"PATH": BASE_PATH, "HOSTNAME": self.pod_name, "HOME": "/"} | self._env(spec)
        command = spec.get("command")
        if not command:
            raise ContainerError(
                f"container {name} has no command: the player cannot read the image's entrypoint"
            )
        mounts = [
            Mount(self.volume_dirs[m["name"]] / m.get("subPath", ""), m["mountPath"],
                  bool(m.get("readOnly")))
            for m in spec.get("volumeMounts", [])
        ]  # fmt: skip
        image_root = self.images.get(spec.get("image", ""), Path("/"))
        uid, gid, groups = self._user(spec, image_root)
        return Container(
            name=name,
            argv=[expand(a, env) for a in [*command, *spec.get("args", [])]],
            env=env, mounts=mounts, working_dir=spec.get("workingDir", "/"), uid=uid, gid=gid,
            groups=groups, image_root=image_root,
        )  # fmt: skip

    def _env(self, spec: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}
        for var in spec.get("env", []):
            if "value" in var:
                env[var["name"]] = expand(var["value"], env)
            elif path := var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath"):
                env[var["name"]] = fields.get(path, "")
            else:
                self.notice(f"env {var['name']} of {spec['name']}: only value and fieldRef played")
        return env

    def _user(
        self, spec: dict[str, Any], image_root: Path
    ) -> tuple[int | None, int | None, tuple[int, ...] | None]:
        """uid, gid and groups by the kubelet's rules; all None to run as the player."""
        who = resolve(self.pod_spec, spec, ImageUsers.of_root(image_root))
        if who.uid == 0 and who.gid == 0 and set(who.groups) <= {0}:
            return None, None, None
        why = self._cannot_switch_user()
        if why:
            self.notice(
                f"container {spec['name']}: runs as uid {os.geteuid()}, not {who.uid}: {why}"
            )
            return None, None, None
        return who.uid, who.gid, who.groups

    def _cannot_switch_user(self) -> str | None:
        if os.geteuid() != 0:
            return "switching users needs root"
        if not reachable(Path(sys.executable)):
            return f"{sys.executable} is not reachable by other users (make a venv from /usr/bin)"
        if self.mode == "rewrite" and not reachable(self.root / "volumes"):
            return f"{self.root} is not reachable by other users"
        return None
