"""The plain overlay, run as the kubelet and the API server would: the Deployment's own
args start the real webhook over its mounted ConfigMap and Secret, its probes answer,
and the API server's view (the caBundle and the Service's DNS name) verifies the TLS."""

from __future__ import annotations

import base64
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hack.localstore import free_port
from hack.procs import terminate
from tests.deploy.tools import VENV_BIN, by_kind

SERVICE_DNS = "latchkey-webhook.latchkey.svc"


def _mount(docs: list[dict[str, Any]], root: Path) -> dict[str, str]:
    """Write each volume's files under ``root`` as the kubelet would; mountPath -> dir."""
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    paths = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        target = root / mount["name"]
        target.mkdir()
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for name, text in by_kind(docs, "ConfigMap")["data"].items():
                (target / name).write_text(text, encoding="utf-8")
        if "secret" in volume:
            for name, data in by_kind(docs, "Secret")["data"].items():
                (target / name).write_bytes(base64.b64decode(data))
        paths[mount["mountPath"]] = str(target)
    return paths


def _remap(arg: str, mounts: dict[str, str]) -> str:
    """``--flag=/mount/path/file`` with the mount's local directory in its place."""
    flag, _, value = arg.partition("=")
    for mount_path, local in mounts.items():
        if value.startswith(mount_path + "/"):
            return f"{flag}={local}{value[len(mount_path) :]}"
    return arg


@pytest.fixture
def webhook(rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> Iterator[int]:
    docs = rendered["plain"]
    mounts = _mount(docs, tmp_path)
    port = free_port()
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = [
        f"--port={port}" if arg.startswith("--port=") else _remap(arg, mounts)
        for arg in container["args"]
    ]
    process = subprocess.Popen(
        [str(VENV_BIN / "latchkey-webhook"), *args, "--host=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        terminate(process)


def _api_server_client(docs: list[dict[str, Any]]) -> httpx.Client:
    """Trusts only the caBundle, and checks the Service's DNS name, as the API server does."""
    (hook,) = by_kind(docs, "MutatingWebhookConfiguration")["webhooks"]
    context = ssl.create_default_context(
        cadata=base64.b64decode(hook["clientConfig"]["caBundle"]).decode()
    )
    return httpx.Client(verify=context, timeout=2)


def test_probes_answer_over_tls_the_api_server_trusts(
    rendered: dict[str, list[dict[str, Any]]], webhook: int
) -> None:
    docs = rendered["plain"]
    container = by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    sni = {"sni_hostname": SERVICE_DNS}
    with _api_server_client(docs) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.get(f"https://127.0.0.1:{webhook}/healthz", extensions=sni)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the webhook did not start"
                time.sleep(0.1)
        for path in sorted(paths):
            response = client.get(f"https://127.0.0.1:{webhook}{path}", extensions=sni)
            assert response.status_code == 200, (path, response.text)
