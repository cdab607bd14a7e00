"""Who a container's processes are: the kubelet's and the container runtime's rules.

Pure: the pod spec, the container spec and what the image says about its users in,
an :class:`Identity` out. The rules (each a row of the table test in
``tests/hack/test_kubelet_identity.py``, with its source in the Kubernetes docs):

- uid: the container's ``runAsUser``, else the pod's, else the image's ``USER``
  (root for the player's images, which name none);
- gid: the container's ``runAsGroup``, else the pod's, else the primary group the
  image's ``/etc/passwd`` gives that uid, else 0;
- supplementary groups: the gid itself, the pod's ``supplementalGroups`` and
  ``fsGroup``, and (with ``supplementalGroupsPolicy: Merge``, the default) the
  groups the image's ``/etc/group`` lists the uid's user in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ImageUsers:
    """What an image knows of users: its USER, /etc/passwd and /etc/group."""

    user: int = 0
    primary: Mapping[int, int] = field(default_factory=dict)  # uid -> gid
    names: Mapping[int, str] = field(default_factory=dict)  # uid -> user name
    members: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # name -> gids

    @classmethod
    def of_root(cls, root: Path) -> ImageUsers:
        """Read ``etc/passwd`` and ``etc/group`` under an image root; none is fine."""
        primary: dict[int, int] = {}
        names: dict[int, str] = {}
        for fields in _records(root / "etc" / "passwd", 4):
            if fields[2].isdigit() and fields[3].isdigit():
                primary.setdefault(int(fields[2]), int(fields[3]))
                names.setdefault(int(fields[2]), fields[0])
        members: dict[str, list[int]] = {}
        for fields in _records(root / "etc" / "group", 4):
            if fields[2].isdigit():
                for name in filter(None, fields[3].split(",")):
                    members.setdefault(name, []).append(int(fields[2]))
        return cls(0, primary, names, {name: tuple(gids) for name, gids in members.items()})


def _records(path: Path, width: int) -> list[list[str]]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [f for f in (line.split(":") for line in lines) if len(f) >= width]


@dataclass(frozen=True)
class Identity:
    """The uid, gid and supplementary groups of a container's processes."""

    uid: int
    gid: int
    groups: tuple[int, ...]


def _context(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    context = obj.get("securityContext")
    return context if isinstance(context, Mapping) else {}


@dataclass(frozen=True)
class Requested:
    """What the spec asks, before the image fills the gaps: ``runAsUser`` and
    ``runAsGroup`` (the container's over the pod's, None when neither says) and the
    pod's added groups (``supplementalGroups``, then ``fsGroup``)."""

    uid: int | None
    gid: int | None
    groups: tuple[int, ...]
    merge_image_groups: bool


def requested(pod_spec: Mapping[str, Any], spec: Mapping[str, Any]) -> Requested:
    pod, own = _context(pod_spec), _context(spec)
    uid, gid = (
        own.get("runAsUser", pod.get("runAsUser")),
        own.get("runAsGroup", pod.get("runAsGroup")),
    )
    groups = [int(g) for g in pod.get("supplementalGroups") or []]
    if pod.get("fsGroup") is not None:
        groups.append(int(pod["fsGroup"]))
    return Requested(
        uid=None if uid is None else int(uid),
        gid=None if gid is None else int(gid),
        groups=tuple(groups),
        merge_image_groups=pod.get("supplementalGroupsPolicy", "Merge") == "Merge",
    )


def resolve(pod_spec: Mapping[str, Any], spec: Mapping[str, Any], image: ImageUsers) -> Identity:
    """The identity the kubelet and runtime give container ``spec`` of the pod."""
    asked = requested(pod_spec, spec)
    uid = image.user if asked.uid is None else asked.uid
    gid = image.primary.get(uid, 0) if asked.gid is None else asked.gid
    groups = [gid, *asked.groups]
    if asked.merge_image_groups and uid in image.names:
        groups += image.members.get(image.names[uid], ())
    return Identity(uid=uid, gid=gid, groups=tuple(sorted(set(groups))))
