"""The real server: ``latchkey-webhook serve`` over HTTPS, checked as the API server
checks it (chain to the caBundle, hostname), a renewed certificate served without a
restart, and the CLI's settings and startup errors."""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonpatch
import msgspec
import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hack.localstore import free_port
from hack.procs import terminate
from sidecar.config import AwsStore, VaultStore
from tests.webhook.test_app import admission_review
from webhook.__main__ import ENV, ServeSettings, main, serve_settings, utc_iso
from webhook.certs import KeyPair, issue, make_ca, write_pair
from webhook.settings import WebhookConfig
from webhook.tls import ReloadingTLS

REPO = Path(__file__).resolve().parents[2]
CONFIG_YAML = """\
stores:
  default:
    kind: vault
    address: https://openbao.openbao.svc:8200
    auth: {method: jwt, audience: openbao}
"""


@dataclass
class Server:
    port: int
    ca: KeyPair
    cert_file: Path
    key_file: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    def url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text()


def _write(tmp: Path) -> tuple[KeyPair, Path, Path, Path]:
    ca = make_ca()
    cert_file, key_file, config = tmp / "tls.crt", tmp / "tls.key", tmp / "config.yaml"
    write_pair(issue(ca, ["localhost"]), cert_file, key_file)
    config.write_text(CONFIG_YAML)
    (tmp / "ca.crt").write_bytes(ca.cert_pem)
    return ca, cert_file, key_file, config


def _wait_listening(server: Server, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"webhook exited {server.process.returncode}: {server.log()}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"webhook not listening after {timeout}s: {server.log()}")


def start_server(tmp: Path) -> Server:
    """``python -m webhook`` with some settings as flags and some from the environment."""
    ca, cert_file, key_file, config = _write(tmp)
    port = free_port()
    env = {
        **os.environ,
        "LATCHKEY_TLS_CERT_FILE": str(cert_file),
        "LATCHKEY_TLS_KEY_FILE": str(key_file),
        "LATCHKEY_HOST": "127.0.0.1",
        "LATCHKEY_PORT": "1",  # the flag below wins
    }
    log_file = tmp / "webhook.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook", "--config", str(config), "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, ca, cert_file, key_file, log_file, process)
    _wait_listening(server)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("webhook"))
    yield running
    terminate(running.process)


def trusting(*cas: KeyPair) -> ssl.SSLContext:
    """A client context that trusts only ``cas``, as the API server trusts the caBundle."""
    return ssl.create_default_context(cadata="".join(ca.cert_pem.decode() for ca in cas))


def served_serial(port: int, *cas: KeyPair, host: str = "localhost") -> int:
    """The serial of the certificate a new connection is served, verified against ``cas``."""
    context = trusting(*cas)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=host) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(pair: KeyPair) -> int:
    return x509.load_pem_x509_certificate(pair.cert_pem).serial_number


def test_serve_warns_at_start_when_the_agent_image_names_no_registry(server: Server) -> None:
    """The config has no agent.image: the default, latchkey-sidecar:0.1.0, is no pull name."""
    _wait_listening(server)
    warnings = [
        json.loads(line) for line in server.log().splitlines() if "names no registry" in line
    ]
    assert [(w["level"], w["msg"].split(",")[0]) for w in warnings] == [
        ("warning", "agent.image latchkey-sidecar:0.1.0 names no registry")
    ]


def test_the_api_server_gets_a_patch_over_verified_https(server: Server) -> None:
    review = admission_review()
    with httpx.Client(verify=trusting(server.ca), base_url=server.url()) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ok"}
        first = client.post("/mutate", json=review)
        again = client.post("/mutate", json=review)  # the same kept-alive connection
        metrics = client.get("/metrics").text
    answer = first.json()["response"]
    assert answer["allowed"] is True
    assert again.json() == first.json()
    patch = json.loads(base64.b64decode(answer["patch"]))
    patched = jsonpatch.apply_patch(review["request"]["object"], patch)
    assert patched["metadata"]["annotations"]["latchkey.dev/status"] == "injected"
    assert "latchkey_webhook_injections_total 2.0" in metrics
    assert first.headers.get("server") is None


def test_an_answer_comes_in_one_tls_record(server: Server) -> None:
    """The head and the body of an answer are sent together (webhook.limits): a TLS read
    returns one record at most, and the first one holds the whole answer."""
    body = json.dumps(admission_review()).encode()
    head = "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        trusting(server.ca).wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        for _ in range(2):  # and again on the kept-alive connection
            tls.sendall(request)
            record = tls.recv(1 << 20)
            status, _, rest = record.partition(b"\r\n")
            headers, _, answer = rest.partition(b"\r\n\r\n")
            assert status == b"HTTP/1.1 200 OK"
            length = re.search(rb"(?im)^content-length: (\d+)$", headers)
            assert length is not None
            assert len(answer) == int(length.group(1))
            assert json.loads(answer)["response"]["allowed"] is True


@pytest.mark.parametrize(
    ("host", "other_ca", "problem"),
    [
        pytest.param("127.0.0.1", False, "IP address mismatch", id="ip-not-on-cert"),
        pytest.param("latchkey.latchkey.svc", False, "Hostname mismatch", id="wrong-name"),
        pytest.param("localhost", True, "unable to get local issuer", id="untrusted-ca"),
    ],
)
def test_a_client_checking_the_certificate_refuses_a_mismatch(
    server: Server, host: str, other_ca: bool, problem: str
) -> None:
    ca = make_ca() if other_ca else server.ca
    with pytest.raises(ssl.SSLCertVerificationError, match=problem):
        served_serial(server.port, ca, host=host)
    assert served_serial(server.port, server.ca) == serial_of_file(server.cert_file)


def serial_of_file(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _replace(path: Path, data: bytes) -> None:
    """Swap a file in one rename, as a Secret volume's symlink swap appears to readers."""
    fresh = path.with_suffix(".new")
    fresh.write_bytes(data)
    fresh.chmod(0o600)
    os.replace(fresh, path)


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        old = served_serial(server.port, server.ca)
        new_ca = make_ca("Renewed CA")
        renewed = issue(new_ca, ["localhost"])
        _replace(server.cert_file, renewed.cert_pem)
        _replace(server.key_file, renewed.key_pem)
        deadline = time.monotonic() + 10
        while served_serial(server.port, server.ca, new_ca) == old and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served_serial(server.port, new_ca) == serial_of(renewed) != old
        assert server.process.poll() is None
        with httpx.Client(verify=trusting(new_ca), base_url=server.url()) as client:
            assert client.post("/mutate", json=admission_review()).json()["response"]["allowed"]
    finally:
        terminate(server.process)
    assert "serving certificate reloaded" in server.log()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pair_that_does_not_match_is_skipped_until_it_does(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = make_ca()
    first, second = issue(ca, ["localhost"]), issue(ca, ["localhost"])
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_pair(first, cert_file, key_file)
    clock = Clock()
    tls = ReloadingTLS(cert_file, key_file, clock=clock)
    _replace(cert_file, second.cert_pem)  # the key is still the first one's
    assert tls.current() is tls.server_context()
    clock.now += 1
    with caplog.at_level(logging.WARNING, logger="webhook.tls"):
        for _ in range(3):
            clock.now += 1
            assert tls.current() is tls.server_context()
    assert tls.serial == serial_of(first)
    assert len(caplog.records) == 1
    assert "does not load" in caplog.text
    _replace(key_file, second.key_pem)
    assert tls.current() is tls.server_context()  # looked a moment ago: not yet
    clock.now += 1
    assert tls.current() is not tls.server_context()
    assert tls.serial == serial_of(second)
    assert tls.problem() is None


def _args(**flags: str) -> argparse.Namespace:
    return argparse.Namespace(**flags)


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        pytest.param(
            {"config": "/etc/c.yaml", "tls_cert_file": "/t/c", "tls_key_file": "/t/k"},
            {},
            ServeSettings(Path("/etc/c.yaml"), Path("/t/c"), Path("/t/k"), "0.0.0.0", 8443, "INFO"),
            id="defaults",
        ),
        pytest.param(
            {},
            {
                "LATCHKEY_CONFIG_FILE": "/e/c.yaml",
                "LATCHKEY_TLS_CERT_FILE": "/e/c",
                "LATCHKEY_TLS_KEY_FILE": "/e/k",
                "LATCHKEY_HOST": "::",
                "LATCHKEY_PORT": "9443",
                "LATCHKEY_LOG_LEVEL": "debug",
            },
            ServeSettings(Path("/e/c.yaml"), Path("/e/c"), Path("/e/k"), "::", 9443, "DEBUG"),
            id="all-from-env",
        ),
        pytest.param(
            {"config": "/f/c.yaml", "port": "10443", "host": "::1"},
            {
                "LATCHKEY_CONFIG_FILE": "/e/c.yaml",
                "LATCHKEY_TLS_CERT_FILE": "/e/c",
                "LATCHKEY_TLS_KEY_FILE": "/e/k",
                "LATCHKEY_PORT": "9443",
            },
            ServeSettings(Path("/f/c.yaml"), Path("/e/c"), Path("/e/k"), "::1", 10443, "INFO"),
            id="flags-win-over-env",
        ),
    ],
)
def test_serve_settings_take_flags_then_env_then_defaults(
    flags: dict[str, str], env: dict[str, str], expected: ServeSettings
) -> None:
    assert serve_settings(_args(**flags), env) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--config", "{tmp}/missing.yaml"], "cannot read config", id="no-config"),
        pytest.param(["--config", "{tmp}/empty.yaml"], "invalid config", id="invalid-config"),
        pytest.param(["--config", "{tmp}/config.yaml", "--port", "http"], "port", id="bad-port"),
        pytest.param(
            ["--config", "{tmp}/config.yaml", "--tls-key-file", "{tmp}/other.key"],
            "cannot load TLS pair",
            id="key-not-matching",
        ),
        pytest.param(
            ["--tls-cert-file", ""],
            "--config (or env LATCHKEY_CONFIG_FILE) is required",
            id="no-cfg",
        ),
    ],
)
def test_a_startup_error_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _, cert_file, key_file, _ = _write(tmp_path)
    (tmp_path / "empty.yaml").write_text("stores: {}\n")
    write_pair(issue(make_ca(), ["localhost"]), tmp_path / "other.crt", tmp_path / "other.key")
    env = {"LATCHKEY_TLS_CERT_FILE": str(cert_file), "LATCHKEY_TLS_KEY_FILE": str(key_file)}
    with pytest.raises(SystemExit) as exit_:
        main(["serve", *(arg.format(tmp=tmp_path) for arg in args)], env)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_the_console_script_reports_a_bad_config_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("stores: [\n")
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "--config", str(tmp_path / "bad.yaml")],
        cwd=REPO,
        env={**os.environ, "LATCHKEY_TLS_CERT_FILE": "x", "LATCHKEY_TLS_KEY_FILE": "y"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("latchkey-webhook: error: cannot read config")
    assert "Traceback" not in done.stderr


def _aliases(model: type[BaseModel] | type[msgspec.Struct]) -> Iterator[str]:
    """Every key of a config model and of the models nested in it, camelCase: the
    webhook's own (pydantic) and the agent contract's (msgspec) alike."""
    if issubclass(model, msgspec.Struct):
        fields = [(f.encode_name, f.type) for f in msgspec.structs.fields(model)]
    else:
        fields = [(f.alias or name, f.annotation) for name, f in model.model_fields.items()]
    for key, annotation in fields:
        yield key
        for nested in typing.get_args(annotation) or (annotation,):
            for inner in typing.get_args(nested) or (nested,):
                if isinstance(inner, type) and issubclass(inner, BaseModel | msgspec.Struct):
                    yield from _aliases(inner)


def test_the_docs_name_every_setting_flag_and_variable() -> None:
    docs = (REPO / "docs/webhook.md").read_text()
    fenced = re.findall(r"```.*?```", docs, flags=re.DOTALL)
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", docs, flags=re.DOTALL))
    code = {word for span in fenced + inline for word in re.findall(r"\w+", span)}
    keys = {*_aliases(WebhookConfig), *_aliases(VaultStore), *_aliases(AwsStore)}
    assert {"caBundle", "tokenExpirationSeconds", "mountPath", "audience"} <= keys
    missing = (keys | set(ENV.values())) - code
    assert not missing, f"docs/webhook.md does not mention {sorted(missing)}"


@settings(max_examples=2000, deadline=None)
@given(
    st.floats(min_value=0, max_value=2**33, allow_nan=False)
    | st.integers(0, 2**33).map(float)
    | st.builds(lambda s, k: s + k * 5e-7, st.integers(10**9, 2 * 10**9), st.integers(0, 2 * 10**6))
)
def test_log_timestamps_are_what_datetime_writes(timestamp: float) -> None:
    expected = dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat()
    assert utc_iso(timestamp) == expected
    assert utc_iso(timestamp) == expected  # and again, from the second it kept
