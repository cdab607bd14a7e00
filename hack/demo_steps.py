"""The demo's presentation: numbered steps, indented details, a patch summary.

Kept apart from ``hack/demo.py`` so the flow there reads as a list of steps.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hack.kubelet import Pod

INJECTED = ("latchkey-init", "latchkey-agent")


class StepFailed(Exception):
    """A demo step failed; its cause has been printed."""


@dataclass
class Demo:
    total: int
    number: int = 0
    Failed = StepFailed

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            print(f"      {line}", flush=True)

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Print the step's title; a failure inside prints its cause and ends the demo."""
        self.number += 1
        print(f"\n[{self.number}/{self.total}] {title}", flush=True)
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            print(f"\nFAILED at step {self.number}: {exc}", flush=True)
            if not isinstance(exc, RuntimeError | TimeoutError):
                traceback.print_exc()
            raise StepFailed(str(exc)) from exc
        self.say(f"({time.monotonic() - started:.1f}s)")

    def show_log(
        self, played: Pod, name: str, *, until: str, last: int = 20, timeout: float = 10
    ) -> None:
        """Show the end of ``name``'s log once it holds ``until`` (as ``kubectl logs``)."""
        deadline = time.monotonic() + timeout
        while until not in played.logs(name):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not print {until!r}: {played.logs(name)!r}")
            time.sleep(0.1)
        self.say(f"$ kubectl logs {name} --tail {last}")
        self.say("\n".join(played.logs(name).rstrip().splitlines()[-last:]))


def _container_line(container: dict[str, Any], kind: str) -> str:
    user = container.get("securityContext", {}).get("runAsUser", "the image's")
    line = f"{kind} {container['name']}: {' '.join(container.get('command', []))}, uid {user}"
    if container.get("restartPolicy") == "Always":
        line += " (native sidecar, startupProbe holds the app until the first write)"
    return line


def describe_patch(pod: dict[str, Any]) -> list[str]:
    """What the webhook added to the pod, one line each, for people."""
    spec = pod["spec"]
    lines = [
        f"volume {v['name']}: {next(k for k in v if k != 'name')}"
        + (" (memory)" if v.get("emptyDir", {}).get("medium") == "Memory" else "")
        for v in spec.get("volumes", [])
        if v["name"].startswith("latchkey-")
    ]
    lines += [_container_line(c, "init container") for c in spec.get("initContainers", [])]
    for container in spec["containers"]:
        if container["name"] in INJECTED:
            lines.append(_container_line(container, "container"))
        else:
            mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
            lines.append(
                f"app {container['name']}: now runs {' '.join(container['command'][:4])} ..."
            )
            lines.append(f"  and mounts {', '.join(m for m in mounts if 'latchkey' in m)}")
    status = pod["metadata"]["annotations"].get("latchkey.dev/status")
    return [*lines, f"annotation latchkey.dev/status: {status}"]


def find_leaks(demo: Demo, logs: dict[str, str], values: dict[str, str]) -> None:
    """Fail if any captured log holds a secret value; say which logs were checked."""
    for name, text in logs.items():
        for label, value in values.items():
            if value in text:
                raise RuntimeError(f"the {name} log holds the secret value of {label}")
    demo.say(f"checked the {', '.join(logs)} logs: no secret value in any of them")
