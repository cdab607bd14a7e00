"""TLS for the plain (no cert-manager) install: a CA, a serving certificate, the caBundle.

Writes into the plain overlay's ``generated-by-hack-plain-certs.py/`` folder (overlay
``manifests/overlays/plain`` unless ``--overlay``): ``tls.crt`` and ``tls.key`` (the
Secret the webhook serves with), ``ca.crt`` (the bundle the API server trusts),
``ca-bundle-patch.yaml`` and ``guard-ca-bundle-patch.yaml`` (put that bundle into the
Mutating and the Validating WebhookConfiguration), all gitignored. On a fresh
checkout the folder is missing, so ``kubectl kustomize`` on the overlay fails with a
path that names this script.

Run it again to renew, then ``kubectl apply -k`` again. The new bundle keeps the
previous CA as well, so replicas still serving the old certificate stay trusted
until the kubelet delivers the renewed Secret and the webhook reloads it. The CA
key is not kept: each run makes a fresh CA, so no long-lived key lies on disk.

    latchkey-webhook certs [--overlay DIR] [--namespace latchkey] [--days 365]
    python hack/plain-certs.py ...        # the same, from a checkout, before installing
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
from pathlib import Path

from cryptography import x509

from webhook.certs import issue, make_ca, write_pair

# Run from a checkout, the plain overlay is here; anywhere else, --overlay names it.
OVERLAY = Path("manifests") / "overlays" / "plain"
SERVICE = "latchkey-webhook"
PEM_END = b"-----END CERTIFICATE-----\n"
# The overlay reads its generated files from here; the name is what kustomize
# prints when they are missing, so it says where they come from.
GENERATED = "generated-by-hack-plain-certs.py"


def service_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach the Service (it uses the first)."""
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def previous_ca(bundle_path: Path) -> bytes:
    """The CA that signed the certificate now deployed, if still valid; else nothing.

    Only the first certificate of the old bundle is carried over, so bundles do
    not grow with every renewal.
    """
    if not bundle_path.exists():
        return b""
    first = bundle_path.read_bytes().split(PEM_END)[0] + PEM_END
    try:
        cert = x509.load_pem_x509_certificate(first)
    except ValueError:
        return b""
    if cert.not_valid_after_utc <= dt.datetime.now(dt.UTC):
        return b""
    return first


def patch_text(bundle: bytes, *, webhooks: int = 1) -> str:
    """A JSON patch (JSON is YAML) setting the caBundle of each of ``webhooks`` webhooks."""
    ops = [
        {
            "op": "add",
            "path": f"/webhooks/{index}/clientConfig/caBundle",
            "value": base64.b64encode(bundle).decode(),
        }
        for index in range(webhooks)
    ]
    return "# Written by hack/plain-certs.py.\n" + json.dumps(ops, indent=2) + "\n"


def write_overlay(overlay: Path, *, namespace: str, days: int) -> list[str]:
    """Make a CA and a serving certificate and write the overlay's files; return their names."""
    out = overlay / GENERATED
    out.mkdir(exist_ok=True)
    ca = make_ca("Latchkey webhook CA", days=days + 30)
    bundle = ca.cert_pem + previous_ca(out / "ca.crt")
    write_pair(
        issue(ca, service_names(SERVICE, namespace), days=days),
        out / "tls.crt",
        out / "tls.key",
    )
    (out / "ca.crt").write_bytes(bundle)
    (out / "ca-bundle-patch.yaml").write_text(patch_text(bundle), encoding="utf-8")
    # latchkey-guard, the validating configuration, has two webhooks on the same service.
    guard = patch_text(bundle, webhooks=2)
    (out / "guard-ca-bundle-patch.yaml").write_text(guard, encoding="utf-8")
    return ["tls.crt", "tls.key", "ca.crt", "ca-bundle-patch.yaml", "guard-ca-bundle-patch.yaml"]


def main(argv: list[str] | None = None, *, prog: str | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="TLS for the plain (no cert-manager) install: a CA, a serving "
        "certificate and the caBundle patches, written into the plain overlay.",
    )
    parser.add_argument("--overlay", type=Path, default=OVERLAY, help="the plain overlay directory")
    parser.add_argument("--namespace", default="latchkey", help="where the webhook runs")
    parser.add_argument("--days", type=int, default=365, help="serving certificate lifetime")
    args = parser.parse_args(argv)
    if not (args.overlay / "kustomization.yaml").is_file():
        parser.error(
            f"{args.overlay} has no kustomization.yaml: give --overlay DIR, the plain overlay "
            "(latchkey/manifests/overlays/plain)"
        )
    if args.days < 1:
        parser.error("--days must be at least 1")
    names = write_overlay(args.overlay, namespace=args.namespace, days=args.days)
    print(f"wrote {', '.join(names)} to {args.overlay / GENERATED}")
    print(
        f"next: kubectl apply -k on your own overlay, the one whose resources include "
        f"{args.overlay} (docs/install.md, step 2)"
    )


if __name__ == "__main__":
    main()
