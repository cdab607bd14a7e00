"""The webhook as the API server sees it, on loopback: shared by ``make demo`` and e2e.

:class:`LocalWebhook` makes a fresh CA and a serving certificate for
``localhost``, writes the admin config, runs the real ``latchkey-webhook serve``
over HTTPS and sends it AdmissionReviews the way the API server would: the pod
already defaulted (``generateName`` and no name, the default token volume,
``terminationMessagePath``...), the namespace only in the request, the CA and
hostname checked by the client. It is not the API server: no RBAC, no schema.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import ssl
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonpatch
import yaml

from hack.localstore import OpenBao, free_port
from hack.procs import terminate, wait_ready
from webhook.certs import KeyPair, issue, make_ca, write_pair

WEBHOOK = Path(sys.executable).with_name("latchkey-webhook")
POD_DEFAULTS: dict[str, Any] = {
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "terminationGracePeriodSeconds": 30,
    "securityContext": {},
    "enableServiceLinks": True,
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0,
}
NAMESPACE_FIELD = {"apiVersion": "v1", "fieldPath": "metadata.namespace"}


def vault_store(openbao: OpenBao, *, audience: str) -> dict[str, Any]:
    """A store entry of the admin config for a local OpenBao, trusting its CA."""
    return {
        "kind": "vault",
        "address": openbao.address,
        "caBundle": openbao.ca.cert_pem.decode(),
        "auth": {"method": "jwt", "mount": "jwt", "audience": audience},
    }


def _defaulted_container(container: dict[str, Any], token_volume: str) -> dict[str, Any]:
    mount = {
        "name": token_volume,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        "readOnly": True,
    }
    return {
        "imagePullPolicy": "IfNotPresent",
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        **container,
        "volumeMounts": [*container.get("volumeMounts", []), mount],
    }


def api_server_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` as the API server hands it to admission: defaulted, token volume added."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    token_volume = f"kube-api-access-{uuid.uuid4().hex[:5]}"
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for key, value in POD_DEFAULTS.items():
        spec.setdefault(key, copy.deepcopy(value))
    spec["containers"] = [_defaulted_container(c, token_volume) for c in spec["containers"]]
    sources = [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"fieldRef": NAMESPACE_FIELD, "path": "namespace"}]}},
    ]  # fmt: skip
    projected = {"defaultMode": 420, "sources": sources}
    spec["volumes"] = [*spec.get("volumes", []), {"name": token_volume, "projected": projected}]
    return pod


def admission_review(pod: dict[str, Any], *, namespace: str) -> dict[str, Any]:
    """An ``admission.k8s.io/v1`` review of a CREATE, as the API server sends it."""
    group = {"group": "", "version": "v1"}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {**group, "kind": "Pod"},
            "resource": {**group, "resource": "pods"},
            "requestKind": {**group, "kind": "Pod"},
            "requestResource": {**group, "resource": "pods"},
            "name": pod["metadata"].get("name", ""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


@dataclass(frozen=True)
class Admission:
    """The webhook's answer for one pod, and the pod with its patch applied."""

    allowed: bool
    message: str
    patch: list[dict[str, Any]]
    warnings: list[str]
    pod: dict[str, Any]


@dataclass
class LocalWebhook:
    """``latchkey-webhook serve`` on a loopback port, over HTTPS with a fresh CA."""

    workdir: Path
    config: dict[str, Any]
    ca: KeyPair = field(default_factory=lambda: make_ca("Latchkey webhook CA"))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # What runs ``latchkey-webhook``: this venv's, or e.g. ``podman run ... IMAGE`` with
    # ``workdir`` mounted at the same path (the image's entrypoint is latchkey-webhook).
    launcher: tuple[str, ...] = (str(WEBHOOK),)

    @functools.cached_property
    def _trust(self) -> ssl.SSLContext:
        """Trust in our CA only, built once for every readiness poll and review."""
        return ssl.create_default_context(cadata=self.ca.cert_pem.decode())

    @property
    def log_file(self) -> Path:
        return self.workdir / "webhook.log"

    def start(self, timeout: float = 30) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ca.crt").write_bytes(self.ca.cert_pem)
        write_pair(
            issue(self.ca, ["localhost"]), self.workdir / "tls.crt", self.workdir / "tls.key"
        )
        (self.workdir / "config.yaml").write_text(yaml.safe_dump(self.config), encoding="utf-8")
        argv = [
            *self.launcher, "serve", "--config", str(self.workdir / "config.yaml"),
            "--tls-cert-file", str(self.workdir / "tls.crt"),
            "--tls-key-file", str(self.workdir / "tls.key"),
            "--host", "127.0.0.1", "--port", str(self.port),
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_ready(
            self.process, self._healthy, what="the webhook", log_file=self.log_file,
            timeout=timeout,
        )  # fmt: skip

    def client(self) -> httpx.Client:
        """A client that checks the serving certificate against our CA and ``localhost``."""
        base = f"https://localhost:{self.port}"
        return httpx.Client(base_url=base, verify=self._trust, timeout=10)

    def _healthy(self) -> bool:
        with self.client() as client:
            return client.get("/healthz").status_code == 200

    def admit(self, pod: dict[str, Any], *, namespace: str) -> Admission:
        """Send ``pod`` (defaulted first) for admission; apply the patch it returns."""
        defaulted = api_server_defaults(pod)
        review = admission_review(defaulted, namespace=namespace)
        with self.client() as client:
            answer = client.post("/mutate", json=review)
        answer.raise_for_status()
        response = answer.json()["response"]
        if response["uid"] != review["request"]["uid"]:
            raise RuntimeError("the webhook answered with another request's uid")
        patch: list[dict[str, Any]] = []
        if "patch" in response:
            patch = json.loads(base64.b64decode(response["patch"]))
        return Admission(
            allowed=response["allowed"],
            message=response.get("status", {}).get("message", ""),
            patch=patch,
            warnings=response.get("warnings", []),
            pod=jsonpatch.apply_patch(defaulted, patch) if patch else defaulted,
        )

    def stop(self) -> None:
        terminate(self.process)
        self.process = None
