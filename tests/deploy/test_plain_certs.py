"""``latchkey-webhook certs`` (and its checkout shim ``hack/plain-certs.py``): TLS for the
plain overlay that the API server will actually accept."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509

from tests.deploy.tools import MANIFESTS, admin_tool


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    target = tmp_path / "plain"
    shutil.copytree(MANIFESTS / "overlays" / "plain", target)
    return target


def _run(overlay: Path, *args: str, via: str = "cli") -> None:
    result = admin_tool("certs", "--overlay", str(overlay), *args, via=via)
    assert result.returncode == 0, result.stderr
    assert "next: kubectl apply -k on your own overlay, the one whose resources include" in (
        result.stdout
    )


def _generated(overlay: Path, name: str) -> Path:
    return overlay / "generated-by-hack-plain-certs.py" / name


def _bundle(overlay: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(_generated(overlay, "ca.crt").read_bytes())


def test_serving_certificate_chains_to_the_bundle(overlay: Path) -> None:
    _run(overlay)
    cert = x509.load_pem_x509_certificate(_generated(overlay, "tls.crt").read_bytes())
    (ca,) = _bundle(overlay)
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "latchkey-webhook.latchkey.svc" in names.get_values_for_type(x509.DNSName)
    assert _generated(overlay, "tls.key").stat().st_mode & 0o077 == 0


def test_patch_carries_the_bundle(overlay: Path) -> None:
    _run(overlay)
    (op,) = json.loads(_generated(overlay, "ca-bundle-patch.yaml").read_text().split("\n", 1)[1])
    assert op["path"] == "/webhooks/0/clientConfig/caBundle"
    assert base64.b64decode(op["value"]) == _generated(overlay, "ca.crt").read_bytes()


def test_renewal_keeps_trusting_the_previous_ca_only(overlay: Path) -> None:
    _run(overlay)
    first = _bundle(overlay)
    _run(overlay)
    second = _bundle(overlay)
    assert len(second) == 2
    assert second[1] == first[0]
    assert second[0] != first[0]
    _run(overlay)
    third = _bundle(overlay)
    assert [c.serial_number for c in third[1:]] == [second[0].serial_number]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--overlay", "/nonexistent"], "no kustomization.yaml", id="not-an-overlay"),
        pytest.param(["--days", "0"], "--days must be at least 1", id="zero-days"),
    ],
)
def test_bad_arguments_are_explained(overlay: Path, args: list[str], message: str) -> None:
    result = admin_tool("certs", "--overlay", str(overlay), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("via", ["cli", "hack"])
def test_the_installed_cli_and_the_checkout_shim_write_the_same_files(
    overlay: Path, via: str
) -> None:
    _run(overlay, via=via)
    names = sorted(p.name for p in (overlay / "generated-by-hack-plain-certs.py").iterdir())
    assert names == sorted(
        ["ca-bundle-patch.yaml", "ca.crt", "guard-ca-bundle-patch.yaml", "tls.crt", "tls.key"]
    )
