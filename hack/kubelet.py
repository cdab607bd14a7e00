"""The kubelet player: runs a (mutated) pod's containers as local processes.

There is no cluster here, so the demo and the end-to-end tests hand the pod the
webhook returned to :class:`Pod`, which does what a kubelet would: maps every
volume to a directory (see ``kubelet_volumes``), runs the init containers in
order (a native sidecar, ``restartPolicy: Always``, is left running once its
``startupProbe`` passes; a failing init stops the pod with its exit code and
last log lines), then starts the app containers. Each container runs in one of
two modes (see ``kubelet_proc``), and the player says which.

It is not a kubelet: no restarts, no liveness or readiness probing, no
resource limits, no image pulls (images are ignored unless mapped to a root
directory with ``images=``), and probes run faster than their ``periodSeconds``
so the demo stays quick.

    with Pod(pod, root=tmp, minter=issuer_minter(issuer)) as played:
        played.start()
        played.wait_ready(timeout=30)
        print(played.logs("app"))
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from hack.kubelet_proc import Container, ContainerError
from hack.kubelet_spec import SpecReader
from hack.kubelet_volumes import Minter, TokenRequest, Volumes

__all__ = ["Pod", "PodFailed", "TokenRequest", "issuer_minter", "namespace_mode_available"]

TAIL_LINES = 20
TAIL_BYTES = 2048


class PodFailed(Exception):
    """The pod could not start: an init container failed, or a probe never passed."""


def namespace_mode_available() -> bool:
    """Root with ``unshare`` and ``nsenter``: containers can see their real mount paths."""
    return os.geteuid() == 0 and all(shutil.which(t) for t in ("unshare", "nsenter"))


def issuer_minter(issuer: Any) -> Minter:
    """A minter backed by ``hack.localstore.Issuer`` (the stand-in token issuer)."""

    def mint(request: TokenRequest) -> str:
        return str(
            issuer.mint(
                namespace=request.namespace,
                service_account=request.service_account,
                audience=request.audience,
                pod=request.pod,
                ttl=request.expiration_seconds,
            )
        )

    return mint


def tail(text: str) -> str:
    """The end of a log, as ``FallbackToLogsOnError`` puts it in the termination message."""
    return "\n".join(text.splitlines()[-TAIL_LINES:])[-TAIL_BYTES:]


class Pod:
    """One pod played on this machine. Start it, wait for it, read logs, exec, stop."""

    def __init__(
        self,
        pod: dict[str, Any],
        *,
        root: Path,
        minter: Minter,
        namespace: str | None = None,
        mode: str | None = None,
        images: dict[str, Path] | None = None,
        on_event: Callable[[str], None] | None = None,
        probe_interval: float = 0.2,
    ) -> None:
        meta = pod.get("metadata", {})
        self.spec: dict[str, Any] = pod["spec"]
        self.name: str = meta.get("name") or meta.get("generateName", "pod-") + secrets.token_hex(3)
        self.namespace: str = namespace or meta.get("namespace") or "default"
        self.root = root
        self.mode = mode or ("namespace" if namespace_mode_available() else "rewrite")
        self.images = images or {}
        self.on_event = on_event
        self.probe_interval = probe_interval
        (root / "logs").mkdir(parents=True, exist_ok=True)
        (root / "run").mkdir(mode=0o700, exist_ok=True)
        account = self.spec.get("serviceAccountName", "default")
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        self.volumes = Volumes(
            root / "volumes", minter, self.event, (self.namespace, account, self.name), fs_group
        )
        self.containers: dict[str, Container] = {}
        self.failure: str | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the public API ------------------------------------------------------------------

    def start(self) -> None:
        """Set up the volumes and start the pod's containers in a background thread."""
        self.event(f"pod {self.namespace}/{self.name}: containers run in {self.mode} mode")
        (self.root / "volumes").mkdir(mode=0o755, exist_ok=True)
        atexit.register(self.stop)  # no container outlives the demo or the test run
        self.volumes.create(self.spec.get("volumes", []))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 60) -> None:
        """Return once every app container started; PodFailed says why it did not."""
        if not self._ready.wait(timeout):
            raise TimeoutError(f"pod {self.name} not started in {timeout}s")
        if self.failure:
            raise PodFailed(self.failure)

    def logs(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def exec(
        self, container: str, argv: list[str], *, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``container`` (its env, user and mounts), like ``kubectl exec``."""
        target = self.containers.get(container)
        if target is None:
            raise ContainerError(f"container {container} has not started")
        full, env = target.exec_argv(argv, mode=self.mode)
        return subprocess.run(
            full, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL, **target.exec_user(self.mode),
        )  # fmt: skip

    def rotate_token(self) -> None:
        """Mint the projected tokens again now, as the kubelet's rotation does."""
        self.volumes.rotate_tokens()
        self.event("projected service-account token rotated")

    def state(self, name: str) -> str:
        """``waiting`` (never started), ``running`` or ``exited <code>``."""
        container = self.containers.get(name)
        if container is None or container.process is None:
            return "waiting"
        code = container.exit_code
        return "running" if code is None else f"exited {code}"

    def wait_exit(self, name: str, timeout: float = 30) -> int:
        """The exit code of a container, once it has exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            container = self.containers.get(name)
            if container and container.exit_code is not None:
                return container.exit_code
            time.sleep(0.05)
        raise TimeoutError(f"container {name} still {self.state(name)} after {timeout}s")

    def stop(self, grace: float = 5) -> None:
        """Stop app containers, then sidecars (as Kubernetes orders it); clean up. Idempotent."""
        if self._stopping.is_set():
            return
        atexit.unregister(self.stop)
        self._stopping.set()
        if self._thread:
            self._thread.join()
        for container in reversed(list(self.containers.values())):
            container.stop(grace)
        self.volumes.close()
        shutil.rmtree(self.root / "run", ignore_errors=True)
        self.event(f"pod {self.name} stopped")

    def __enter__(self) -> Pod:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    def event(self, message: str) -> None:
        """What the player did, to its own log and to ``on_event`` (names only, no values)."""
        with (self.root / "logs" / "kubelet.log").open("a", encoding="utf-8") as log:
            log.write(message + "\n")
        if self.on_event:
            self.on_event(message)

    # --- the sequence ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            for spec in self.spec.get("initContainers", []):
                if not self._stopping.is_set():
                    self._run_init(spec)
            for spec in self.spec.get("containers", []):
                if not self._stopping.is_set():
                    self._launch(spec)
        except (PodFailed, ContainerError) as exc:
            self.failure = str(exc)
            self.event(f"pod {self.name} failed: {exc}")
        finally:
            self._ready.set()

    def _run_init(self, spec: dict[str, Any]) -> None:
        container = self._launch(spec)
        if spec.get("restartPolicy") == "Always":
            self._wait_started(container, spec.get("startupProbe"))
            return
        code = self._wait_exit(container)
        if code != 0:
            message = tail(self.logs(container.name))
            raise PodFailed(f"init container {container.name} exited with code {code}:\n{message}")
        self.event(f"init container {container.name} completed")

    def _wait_exit(self, container: Container) -> int | None:
        assert container.process is not None
        while not self._stopping.is_set():
            try:
                return container.process.wait(0.1)
            except subprocess.TimeoutExpired:
                continue
        return None

    def _wait_started(self, container: Container, probe: dict[str, Any] | None) -> None:
        if not probe or "exec" not in probe:
            self.event(f"sidecar {container.name} running (no exec startupProbe to wait for)")
            return
        period = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        deadline = time.monotonic() + probe.get("initialDelaySeconds", 0) + period
        while time.monotonic() < deadline and not self._stopping.is_set():
            if not container.running:
                raise PodFailed(
                    f"sidecar {container.name} exited with code {container.exit_code} "
                    f"before its startup probe passed:\n{tail(self.logs(container.name))}"
                )
            if self._probe(container, probe["exec"]["command"]):
                self.event(f"sidecar {container.name} started (startup probe passed)")
                return
            time.sleep(self.probe_interval)
        if not self._stopping.is_set():
            raise PodFailed(f"startup probe of {container.name} did not pass within {period}s")

    def _probe(self, container: Container, argv: list[str]) -> bool:
        try:
            return self.exec(container.name, argv, timeout=10).returncode == 0
        except (ContainerError, subprocess.TimeoutExpired):
            return False

    def _launch(self, spec: dict[str, Any]) -> Container:
        reader = SpecReader(
            pod_spec=self.spec, pod_name=self.name, namespace=self.namespace, mode=self.mode,
            root=self.root, volume_dirs=self.volumes.dirs, images=self.images, notice=self.event,
        )  # fmt: skip
        container = reader.container(spec)
        self.containers[container.name] = container
        container.launch(
            mode=self.mode, log=self.root / "logs" / f"{container.name}.log",
            spec_dir=self.root / "run",
        )  # fmt: skip
        self.event(f"container {container.name} started as uid {container.uid or 0}")
        return container
