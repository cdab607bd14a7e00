"""Who the agent runs as, and so who can read the secret files (SPEC "File ownership").

The agent writes files the app must read while nobody else should: when the app's
uid is known the agent simply becomes that uid; failing that, a shared fsGroup
makes group-readable files enough; failing both, files are world-readable inside
a volume only the selected containers mount, and the user is told how to do better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from webhook.shape import OBJECT

OWNER_ONLY, GROUP_READ, WORLD_READ = 0o400, 0o440, 0o444
WORLD_READABLE_WARNING = (
    "latchkey: secret files are readable by every uid in the selected containers (mode 0444) "
    "because their uid is unknown; set securityContext.runAsUser (one non-root uid for all "
    "selected containers) or the pod's securityContext.fsGroup to get owner-only files"
)


class Ownership(msgspec.Struct, frozen=True):
    """The agent's uid/gid, the files' default mode, and whether the agent is the app's uid."""

    uid: int
    gid: int
    mode: int
    as_app: bool
    warning: str | None = None


def security_context(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A container's or pod spec's ``securityContext``; empty when absent or odd."""
    context = obj.get("securityContext")
    return context if isinstance(context, OBJECT) else {}


def _known(value: object) -> int | None:
    """A usable id: a positive int (0 is root, which the agent never runs as)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def effective_uid(container: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> int | None:
    """The uid the container runs as when the spec says so; None when the image decides."""
    own = security_context(container).get("runAsUser")
    return _known(own if own is not None else security_context(pod_spec).get("runAsUser"))


def _effective_gid(container: Mapping[str, Any], pod_spec: Mapping[str, Any]) -> int | None:
    own = security_context(container).get("runAsGroup")
    value = own if own is not None else security_context(pod_spec).get("runAsGroup")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def decide(
    selected: Sequence[Mapping[str, Any]], *, pod_spec: Mapping[str, Any], fallback_uid: int
) -> Ownership:
    """Ownership for a pod whose ``selected`` containers read the files."""
    uids = {effective_uid(container, pod_spec) for container in selected}
    if len(uids) == 1 and (uid := uids.pop()) is not None:
        gid = _effective_gid(selected[0], pod_spec)
        return Ownership(uid=uid, gid=uid if gid is None else gid, mode=OWNER_ONLY, as_app=True)
    fs_group = _known(security_context(pod_spec).get("fsGroup"))
    if fs_group is not None:
        return Ownership(uid=fallback_uid, gid=fs_group, mode=GROUP_READ, as_app=False)
    return Ownership(
        uid=fallback_uid,
        gid=fallback_uid,
        mode=WORLD_READ,
        as_app=False,
        warning=WORLD_READABLE_WARNING,
    )
