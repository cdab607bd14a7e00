"""hack/store-setup.py's pure parts: the documented example plan parses, and JWKS keys
(RSA or EC, as clusters sign with either) become the same public keys as PEM."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.deploy.tools import MANIFESTS


def test_example_plan_parses(store_setup: ModuleType, tmp_path: Path) -> None:
    plan = store_setup.load_plan(MANIFESTS / "examples" / "store-setup.yaml")
    assert plan.auth.jwks_file == MANIFESTS / "examples" / "jwks.json"
    (role,) = plan.roles
    assert (role.role, role.policy) == ("web", "latchkey-shop-web")
    assert 'path "database/creds/web" {' in store_setup.policy_hcl(role)


def _spki(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    "public",
    [
        pytest.param(rsa.generate_private_key(65537, 2048).public_key(), id="rsa"),
        pytest.param(ec.generate_private_key(ec.SECP256R1()).public_key(), id="ec-p256"),
    ],
)
def test_jwks_keys_become_the_same_pem(
    store_setup: ModuleType, public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
) -> None:
    if isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public)
    jwks = {"keys": [json.loads(jwk) | {"kid": "k1"}]}
    (pem,) = store_setup.jwks_to_pems(jwks)
    assert pem.encode() == _spki(public)


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        pytest.param({"keys": []}, "holds no keys", id="empty"),
        pytest.param({"keys": [{"kty": "oct", "kid": "k9"}]}, "JWKS key k9", id="symmetric"),
    ],
)
def test_unusable_jwks_is_explained(
    store_setup: ModuleType, jwks: dict[str, Any], message: str
) -> None:
    with pytest.raises(store_setup.SetupError, match=message):
        store_setup.jwks_to_pems(jwks)
