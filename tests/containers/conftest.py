"""The container suite: the real images, built by ``hack/images.py`` (reused while their
inputs are unchanged), run with podman as the kubelet would run the mutated pod.

One module-scoped scene serves every test: a real OpenBao on loopback, the webhook
image serving HTTPS, the demo pod (``hack/demo/pod.yaml``) admitted by it, and that
pod run as one podman pod with the agent image as its native sidecar. The demo's
app image is busybox; no image can be pulled here, so its app container is a
``FROM scratch`` image with one static binary instead, which also proves env
injection needs no shell and no libc.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hack.demo import AUDIENCE, NAMESPACE, POD_FILE, seed
from hack.images import IMAGES, RUNTIME, ULIMITS, build_all
from hack.kubelet import issuer_minter
from hack.local_webhook import Admission, LocalWebhook, vault_store
from hack.localstore import Issuer, OpenBao
from hack.podman_pod import PodmanPod
from tests.containers.app import app_image

SECRETS_DIR = "/latchkey/secrets"
APP_COMMAND = ["/app", "API_KEY", "--watch", f"{SECRETS_DIR}/dsn"]


@dataclass
class Scene:
    """Everything the container tests look at."""

    openbao: OpenBao
    webhook: LocalWebhook
    admission: Admission
    pod: PodmanPod
    values: dict[str, str]

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.admission.pod["spec"]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        every = [*self.spec.get("initContainers", []), *self.spec["containers"]]
        return next(c for c in every if c["name"] == name)


def demo_pod(app_tag: str) -> dict[str, Any]:
    """The demo pod as a user writes it, its busybox app swapped for the static app."""
    pod: dict[str, Any] = yaml.safe_load(POD_FILE.read_text("utf-8"))
    (app,) = pod["spec"]["containers"]
    app.pop("args")
    app.update(image=app_tag, command=APP_COMMAND)
    return pod


def image_webhook(workdir: Path, config: dict[str, Any]) -> LocalWebhook:
    """``LocalWebhook`` whose server is the webhook image, as its own non-root user."""
    name = "latchkey-webhook-" + secrets.token_hex(4)
    launcher = (
        "podman", *RUNTIME, "run", "--rm", "--name", name, "--network", "host",
        *ULIMITS,
        "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{workdir}:{workdir}:U", IMAGES["webhook"],
    )  # fmt: skip
    return LocalWebhook(workdir, config, launcher=launcher)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    build_all()
    work = tmp_path_factory.mktemp("containers")
    app_tag = app_image(work / "app-image")
    issuer = Issuer()
    openbao = OpenBao(work / "openbao")
    openbao.start()
    values = {"password": "pw-" + secrets.token_hex(8), "api_key": "key-" + secrets.token_hex(8)}
    webhook = image_webhook(
        work / "webhook", {"stores": {"default": vault_store(openbao, audience=AUDIENCE)}}
    )
    pod: PodmanPod | None = None
    try:
        seed(openbao, issuer, values)
        webhook.start(timeout=60)
        admission = webhook.admit(demo_pod(app_tag), namespace=NAMESPACE)
        assert admission.allowed, admission.message
        pod = PodmanPod(
            admission.pod, root=work / "pod", minter=issuer_minter(issuer), namespace=NAMESPACE,
            on_event=lambda _message: None,
        )  # fmt: skip
        pod.start(timeout=60)
        yield Scene(openbao, webhook, admission, pod, values)
    finally:
        if pod is not None:
            pod.stop()
        webhook.stop()
        openbao.stop()
