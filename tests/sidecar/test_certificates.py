"""Certificates from the store's PKI engine (``cert-<name>``), against a real OpenBao
with the PKI engine mounted by the test: issued for the pod, verified against the CA,
issued again near 2/3 of a 30 s lifetime (atomically, one on-change per renewal), and
kept through a store outage until they expire, then reported clearly."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hack.localstore import OpenBao, free_port
from sidecar.agent import Agent
from tests.polling import wait_for
from tests.sidecar.agent_helpers import App, temps
from tests.sidecar.fault_proxy import DROP, Fault, FaultProxy
from tests.sidecar.inproc import make_agent, records
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.settings import load_config

LIFETIME = 30
PEM = Encoding.PEM


@dataclass(frozen=True)
class Pki:
    mount: str
    root: x509.Certificate

    @property
    def issue(self) -> str:
        return f"{self.mount}/issue/web"


@pytest.fixture
def pki(openbao: OpenBao, app: App) -> Pki:
    """A PKI engine with a root CA and a role issuing 30 s certificates, which the app's
    store role may use."""
    mount = f"pki-{secrets.token_hex(3)}"
    openbao.api("POST", f"sys/mounts/{mount}", {"type": "pki", "config": {"max_lease_ttl": "1h"}})
    root = openbao.api(
        "POST",
        f"{mount}/root/generate/internal",
        {"common_name": "Latchkey Test Root", "ttl": "1h"},
    )["data"]["certificate"]
    openbao.api("POST", f"{mount}/roles/web", {
        "allow_any_name": True, "ttl": f"{LIFETIME}s", "max_ttl": "5m", "key_type": "ec",
        "key_bits": 256,
    })  # fmt: skip
    openbao.write_policy(app.name, f'path "{mount}/issue/web" {{ capabilities = ["update"] }}\n')
    return Pki(mount, x509.load_pem_x509_certificate(root.encode()))


class Hits(BaseHTTPRequestHandler):
    count: ClassVar[list[float]] = []

    def do_POST(self) -> None:
        self.count.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def on_change() -> Iterator[tuple[str, list[float]]]:
    Hits.count = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/reload", Hits.count
    server.shutdown()
    server.server_close()


def _config(app: App, pki: Pki, url: str, **overrides: Any) -> dict[str, Any]:
    certificate = {
        "name": "tls", "path": pki.issue,
        "params": {"common_name": "web.shop.svc", "ttl": f"{LIFETIME}s"},
    }  # fmt: skip
    return app.config(
        files=[], env=[], envFile=None, certificates=[certificate],
        onChange=[{"kind": "http", "url": url}], **overrides,
    )  # fmt: skip


def _cert(app: App) -> x509.Certificate:
    return x509.load_pem_x509_certificate(app.file("tls.crt").read_bytes())


def _start(
    app: App, config: dict[str, Any], running: Callable[[Agent], threading.Event]
) -> io.StringIO:
    agent, _, stream = make_agent(config, timeout=1.0)
    running(agent)
    wait_for(lambda: app.file("tls-ca.crt").exists(), timeout=20)
    return stream


def test_a_certificate_for_the_pod_renewed_near_two_thirds_of_its_life(
    app: App, pki: Pki, on_change: tuple[str, list[float]],
    running: Callable[[Agent], threading.Event],
) -> None:  # fmt: skip
    url, hits = on_change
    stream = _start(app, _config(app, pki, url), running)
    issued = time.monotonic()
    first = _cert(app)
    first.verify_directly_issued_by(pki.root)
    assert first.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web.shop.svc"
    key = app.file("tls.key")
    assert oct(key.stat().st_mode & 0o777) == oct(0o400)
    assert app.file("tls-ca.crt").read_bytes().strip() == pki.root.public_bytes(PEM).strip()
    inode = app.file("tls.crt").stat().st_ino
    wait_for(lambda: _cert(app).serial_number != first.serial_number, timeout=LIFETIME)
    renewed_after = time.monotonic() - issued
    assert LIFETIME * 2 / 3 - 4 <= renewed_after <= LIFETIME * 2 / 3 + 4, renewed_after
    assert app.file("tls.crt").stat().st_ino != inode, "replaced by rename, not rewritten"
    assert temps(app.workdir / "secrets") == []
    _cert(app).verify_directly_issued_by(pki.root)
    wait_for(lambda: len(hits) == 1, timeout=5)
    time.sleep(2)
    assert len(hits) == 1, "one on-change per renewal, none on the refreshes between"
    assert "BEGIN" not in stream.getvalue(), "no certificate or key in the log"


def test_an_outage_across_a_renewal_keeps_the_certificate_until_it_expires(
    app: App, pki: Pki, openbao: OpenBao, tmp_path: Path, on_change: tuple[str, list[float]],
    running: Callable[[Agent], threading.Event],
) -> None:  # fmt: skip
    url, hits = on_change
    proxy = FaultProxy(openbao, tmp_path / "front")
    try:
        config = _config(app, pki, url)
        config["store"]["address"] = proxy.address
        stream = _start(app, config, running)
        before = app.file("tls.crt").read_bytes(), app.file("tls.key").read_bytes()
        proxy.set(Fault(DROP))
        expired = [r for r in records(stream) if r["msg"].startswith("certificate expired")]
        wait_for(
            lambda: any(r["msg"].startswith("certificate expired") for r in records(stream)),
            timeout=LIFETIME + 20,
        )
        assert not expired
        assert (app.file("tls.crt").read_bytes(), app.file("tls.key").read_bytes()) == before
        (report,) = [r for r in records(stream) if r["msg"].startswith("certificate expired")]
        assert (report["file"], report["path"]) == ("tls.crt", pki.issue)
        assert any("keeping the last good files" in r["msg"] for r in records(stream))
        assert hits == [], "nothing changed, nothing to act on"
        proxy.set(None)
        wait_for(lambda: app.file("tls.crt").read_bytes() != before[0], timeout=30)
    finally:
        proxy.close()


CONFIG = load_config(Path(__file__).parents[1] / "fixtures" / "config.yaml")


@pytest.mark.parametrize(
    ("annotations", "spec", "message"),
    [
        pytest.param({"latchkey.dev/cert-tls": "pki/issue/web"}, {},
                     "no common_name, and the pod has no DNS name of its own", id="no-name"),
        pytest.param({"latchkey.dev/cert-tls": "pki/issue/web",
                      "latchkey.dev/cert-params-tls": '{"common_name": "a", "key_bits": "1"}'},
                     {}, "unknown key_bits", id="unknown-param"),
        pytest.param({"latchkey.dev/cert-tls": "pki/issue/web",
                      "latchkey.dev/cert-params-tls": "common_name=a"},
                     {}, "is not a JSON object such as", id="not-json"),
        *(pytest.param({"latchkey.dev/cert-tls": "pki/issue/web", "latchkey.dev/store": kind},
                       {}, f"{kind} stores issue no certificates", id=kind)
          for kind in ("aws", "gcp", "azure")),
    ],
)  # fmt: skip
def test_admission_checks_the_certificate_annotations(
    annotations: dict[str, str], spec: dict[str, Any], message: str
) -> None:
    pod = {
        "metadata": {"annotations": {"latchkey.dev/inject": "true", **annotations}},
        "spec": {"securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "app", "image": "a"}], **spec},
    }  # fmt: skip
    with pytest.raises(Denied, match=message):
        mutate_pod(pod, namespace="shop", config=CONFIG)


def test_the_pods_own_dns_name_is_the_default_common_name() -> None:
    pod = {
        "metadata": {"annotations": {"latchkey.dev/inject": "true",
                                     "latchkey.dev/cert-tls": "pki/issue/web"}},
        "spec": {"hostname": "web-0", "subdomain": "web", "securityContext": {"runAsUser": 1000},
                 "containers": [{"name": "app", "image": "a"}]},
    }  # fmt: skip
    mutation = mutate_pod(pod, namespace="shop", config=CONFIG)
    assert mutation.pod is not None
    (agent,) = mutation.pod["spec"]["initContainers"]
    (certificate,) = json.loads(agent["env"][0]["value"])["certificates"]
    assert certificate["params"] == {"common_name": "web-0.web.shop.svc.cluster.local"}
    assert certificate["mode"] == 0o400
