"""The Kubernetes auth method: OpenBao asks a TokenReview endpoint whether the pod's
projected token is good. The endpoint here is the only stand-in for the API server:
it verifies the JWT with the test issuer's public key, as the API server would."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from hack.localstore import Issuer, OpenBao
from tests.sidecar.agent_helpers import NAMESPACE, App, error_line, run_agent
from webhook.certs import issue, make_ca, write_pair

REVIEWER_TOKEN = "reviewer-token-for-openbao"


class TokenReview(http.server.BaseHTTPRequestHandler):
    """``POST /apis/authentication.k8s.io/v1/tokenreviews``, answered like an API server."""

    issuer: Issuer
    reviews: list[dict[str, Any]]

    def do_POST(self) -> None:
        if self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
            return self._answer(404, {"kind": "Status", "message": "not found"})
        if self.headers.get("Authorization") != f"Bearer {REVIEWER_TOKEN}":
            return self._answer(401, {"kind": "Status", "message": "Unauthorized"})
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reviews.append(review)
        spec = review.get("spec", {})
        return self._answer(201, {**review, "status": self._status(spec)})

    def _status(self, spec: dict[str, Any]) -> dict[str, Any]:
        audiences = spec.get("audiences") or None
        try:
            claims = jwt.decode(
                spec.get("token", ""),
                self.issuer.key.public_key(),
                algorithms=["RS256"],
                audience=audiences,
                options={"verify_aud": bool(audiences)},
            )
        except jwt.PyJWTError as exc:
            return {"authenticated": False, "error": str(exc)}
        k8s = claims["kubernetes.io"]
        return {
            "authenticated": True,
            "user": {
                "username": claims["sub"],
                "uid": k8s["serviceaccount"]["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{k8s['namespace']}"],
            },
            "audiences": claims["aud"],
        }

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def api_server(
    issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """An HTTPS TokenReview endpoint on loopback: (URL, CA PEM, reviews seen)."""
    workdir = tmp_path_factory.mktemp("apiserver")
    ca = make_ca("test cluster CA")
    write_pair(issue(ca, ["127.0.0.1"]), workdir / "tls.crt", workdir / "tls.key")
    reviews: list[dict[str, Any]] = []
    handler = type("Handler", (TokenReview,), {"issuer": issuer, "reviews": reviews})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(workdir / "tls.crt", workdir / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca.cert_pem.decode(), reviews
    server.shutdown()


@pytest.fixture
def k8s_app(
    openbao: OpenBao,
    issuer: Issuer,
    tmp_path: Path,
    api_server: tuple[str, str, list[dict[str, Any]]],
) -> App:
    host, ca_pem, _ = api_server
    mounts = openbao.api("GET", "sys/auth")["data"]
    if "kubernetes/" not in mounts:
        openbao.api("POST", "sys/auth/kubernetes", {"type": "kubernetes"})
    openbao.api(
        "POST",
        "auth/kubernetes/config",
        {
            "kubernetes_host": host,
            "kubernetes_ca_cert": ca_pem,
            "token_reviewer_jwt": REVIEWER_TOKEN,
            "disable_local_ca_jwt": True,
        },
    )
    app = App(openbao, issuer, tmp_path).seed()
    openbao.api(
        "POST",
        f"auth/kubernetes/role/{app.role}",
        {
            "bound_service_account_names": [app.name],
            "bound_service_account_namespaces": [NAMESPACE],
            "audience": "openbao",
            "token_policies": [app.name],
        },
    )
    return app


def k8s_config(app: App) -> dict[str, Any]:
    config = app.config()
    config["store"]["auth"] = {"method": "kubernetes", "audience": "openbao"}
    return config


def test_login_through_token_review(
    k8s_app: App, api_server: tuple[str, str, list[dict[str, Any]]]
) -> None:
    _, _, reviews = api_server
    done = run_agent("--once", config=k8s_config(k8s_app))
    assert done.returncode == 0, done.stderr
    assert k8s_app.file("password").read_text() == k8s_app.values["password"]
    mine = [r for r in reviews if r["spec"]["token"] == k8s_app.token_path.read_text()]
    assert mine, "OpenBao asked the TokenReview endpoint about the pod's token"
    assert mine[-1]["spec"].get("audiences") == ["openbao"]
    k8s_app.assert_no_value(done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("mint", "needle"),
    [
        pytest.param(
            {"audience": "not-openbao"}, "invalid audience (aud) claim", id="wrong-audience"
        ),
        pytest.param(
            {"service_account": "intruder"},
            "service account name not authorized",
            id="other-service-account",
        ),
        pytest.param({"forged": "yes"}, "permission denied", id="not-signed-by-the-cluster"),
    ],
)
def test_token_review_refusals_are_login_denied(
    k8s_app: App, mint: dict[str, str], needle: str
) -> None:
    if mint.pop("forged", None):  # the TokenReview endpoint is who refuses this one
        k8s_app.token_path.write_text(
            Issuer().mint(namespace=NAMESPACE, service_account=k8s_app.name, audience="openbao")
        )
    else:
        k8s_app.write_token(**mint)
    done = run_agent("--once", config=k8s_config(k8s_app))
    assert done.returncode == 5, done.stderr
    line = error_line(done.stderr)
    assert line["error"] == "LoginDenied"
    assert f'role "{k8s_app.role}"' in line["msg"]
    assert 'auth mount "kubernetes"' in line["msg"]
    assert needle in line["msg"], line["msg"]
    k8s_app.assert_no_value(done.stdout, done.stderr)
