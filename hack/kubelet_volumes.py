"""The kubelet player's volumes: each pod volume as a directory on this machine.

``emptyDir`` with ``medium: Memory`` becomes a tmpfs when we are root (so
secrets stay off the disk, as on a node), else a plain directory; a projected
``serviceAccountToken`` becomes a directory holding a freshly minted token,
re-minted at 80% of its lifetime (as the kubelet does) or on demand. With a pod
``fsGroup`` an emptyDir is given to that group with the setgid bit, as the
kubelet does. Sources the
player cannot honestly fake (configMap, secret) become empty directories, and
the player says so.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TOKEN_SECONDS = 3600
ROTATE_AT = 0.8


@dataclass(frozen=True)
class TokenRequest:
    """What a token is minted for: the pod's identity and the volume's audience."""

    namespace: str
    service_account: str
    pod: str
    audience: str
    expiration_seconds: int


Minter = Callable[[TokenRequest], str]
Notice = Callable[[str], None]


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` in one step, so a reader never sees half a token."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


@dataclass
class Token:
    """One projected token file and when it was last minted."""

    path: Path
    request: TokenRequest
    mode: int
    minted_at: float = 0.0

    def due(self, now: float) -> bool:
        return now - self.minted_at >= self.request.expiration_seconds * ROTATE_AT

    def mint(self, minter: Minter) -> None:
        write_atomic(self.path, minter(self.request).encode(), self.mode)
        self.minted_at = time.monotonic()


@dataclass
class Volumes:
    """Every volume of one pod, mapped under ``root``; tokens kept fresh in a thread."""

    root: Path
    minter: Minter
    notice: Notice
    identity: tuple[str, str, str]  # namespace, service account, pod name
    fs_group: int | None = None
    dirs: dict[str, Path] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    tmpfs: list[Path] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def create(self, volumes: list[dict[str, Any]]) -> None:
        for volume in volumes:
            path = self.root / volume["name"]
            path.mkdir(parents=True)
            self.dirs[volume["name"]] = path
            self._fill(volume, path)
        for token in self.tokens:
            token.mint(self.minter)
        self._thread = threading.Thread(target=self._rotate_loop, daemon=True)
        self._thread.start()

    def _fill(self, volume: dict[str, Any], path: Path) -> None:
        if "emptyDir" in volume:
            self._empty_dir(volume["emptyDir"] or {}, path)
        elif "projected" in volume:
            self._tmpfs(path, "1Mi")  # the kubelet keeps projected files in memory too
            self._projected(volume["projected"], path)
        elif "hostPath" in volume:
            self.dirs[volume["name"]] = Path(volume["hostPath"]["path"])
            return
        else:
            kind = next((k for k in volume if k != "name"), "unknown")
            self.notice(f"volume {volume['name']}: {kind} is not played; an empty directory")
        path.chmod(0o777 if "emptyDir" in volume else 0o755)
        if self.fs_group is not None and "emptyDir" in volume:
            # The kubelet's SetVolumeOwnership: group fsGroup, group rwx, setgid, so files
            # made in it belong to fsGroup (either fsGroupChangePolicy: the volume is new).
            os.chown(path, -1, self.fs_group)
            path.chmod(0o2777)

    def _empty_dir(self, spec: dict[str, Any], path: Path) -> None:
        if spec.get("medium") == "Memory":
            self._tmpfs(path, spec.get("sizeLimit", "64Mi"))

    def _tmpfs(self, path: Path, size: str) -> None:
        """A tmpfs at ``path`` when we are root; else ``path`` stays a plain directory."""
        if os.geteuid() != 0:
            return
        opts = f"size={size.replace('i', '')},mode=0777"
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], check=True)
        self.tmpfs.append(path)

    def _projected(self, spec: dict[str, Any], path: Path) -> None:
        mode = int(spec.get("defaultMode", 0o644))
        namespace, account, pod = self.identity
        for source in spec.get("sources", []):
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                expiry = int(sat.get("expirationSeconds", DEFAULT_TOKEN_SECONDS))
                audience = sat.get("audience", "https://kubernetes.default.svc.cluster.local")
                request = TokenRequest(namespace, account, pod, audience, expiry)
                self.tokens.append(Token(path / sat["path"], request, mode))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items", []):
                    value = {"metadata.namespace": namespace, "metadata.name": pod}
                    text = value.get(item.get("fieldRef", {}).get("fieldPath", ""), "")
                    write_atomic(path / item["path"], text.encode(), mode)
            else:
                kind = next(iter(source), "unknown")
                self.notice(f"projected source {kind} in {path.name} is not played; left out")

    def rotate_tokens(self) -> None:
        """Mint every token again now, as the kubelet does before one expires."""
        for token in self.tokens:
            token.mint(self.minter)

    def _rotate_loop(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            for token in self.tokens:
                if token.due(now):
                    token.mint(self.minter)

    def close(self) -> None:
        """Stop rotating and unmount the tmpfs volumes (their contents vanish)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        for path in self.tmpfs:
            subprocess.run(["umount", "-l", str(path)], check=False)
        self.tmpfs.clear()
