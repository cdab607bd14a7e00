"""The ``LATCHKEY_CONFIG`` text, byte for byte: the webhook writes it, every agent reads it."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from sidecar.config import (
    AgentConfig,
    AnyStore,
    AwsStore,
    AzureStore,
    CertificateFile,
    EnvSecret,
    Format,
    GcpEndpoints,
    GcpStore,
    HttpAction,
    RenderedFile,
    SecretFile,
    SignalAction,
    SourceSecret,
    VaultAuth,
    VaultStore,
    as_dict,
)

PROVIDER = "projects/1/locations/global/workloadIdentityPools/pool/providers/prov"
# Every field set somewhere, and None left in a store, a nested struct and the files.
FULL = AgentConfig(
    store=GcpStore(workload_identity_provider=PROVIDER, endpoints=GcpEndpoints(sts="https://s.x")),
    files=(
        SecretFile(name="db", path="app/db", key="password", format="raw"),
        SecretFile(name="cfg", path="app/cfg", template="${user}", mode=0o440),
    ),
    sources=(SourceSecret(name="api", path="app/api"),),
    renders=(RenderedFile(name="out.ini", template="{{ secrets.api.x }}", uses=("api",)),),
    certificates=(CertificateFile(name="web", path="pki/issue/web", params={"ttl": "72h"}),),
    env=(EnvSecret(name="TOKEN", path="app/api", key="token"),),
    env_file="/var/run/latchkey.dev/bin/env",
    wrapper_dir="/var/run/latchkey.dev/bin",
    on_change=(
        SignalAction(signal="SIGHUP", container="app"),
        HttpAction(url="http://localhost:1/"),
    ),
)
FULL_JSON = (
    '{"version":1,"store":{"kind":"gcp","workloadIdentityProvider":"' + PROVIDER + '",'
    '"endpoints":{"sts":"https://s.x"},"auth":{"audience":""}},"role":"",'
    '"tokenPath":"/var/run/secrets/latchkey.dev/serviceaccount/token",'
    '"secretsDir":"/latchkey/secrets","stateDir":"/var/run/latchkey.dev/state",'
    '"files":[{"name":"db","path":"app/db","key":"password","format":"raw","mode":256},'
    '{"name":"cfg","path":"app/cfg","template":"${user}","mode":288}],'
    '"sources":[{"name":"api","path":"app/api"}],'
    '"renders":[{"name":"out.ini","template":"{{ secrets.api.x }}","uses":["api"],"mode":256}],'
    '"certificates":[{"name":"web","path":"pki/issue/web","params":{"ttl":"72h"},"mode":256}],'
    '"env":[{"name":"TOKEN","path":"app/api","key":"token"}],'
    '"envFile":"/var/run/latchkey.dev/bin/env","wrapperDir":"/var/run/latchkey.dev/bin",'
    '"refreshSeconds":300,"onChange":[{"kind":"signal","signal":"SIGHUP","container":"app"},'
    '{"kind":"http","url":"http://localhost:1/"}]}'
)


def test_to_json_keeps_order_and_defaults_and_leaves_out_none() -> None:
    assert FULL.to_json() == FULL_JSON


def test_to_json_leaves_out_empty_sources_renders_and_certificates() -> None:
    bare = AgentConfig(
        store=VaultStore(address="https://bao:8200", auth=VaultAuth(audience="bao")), role="app"
    )
    assert bare.to_json() == (
        '{"version":1,"store":{"kind":"vault","address":"https://bao:8200","namespace":"",'
        '"auth":{"method":"jwt","mount":"","audience":"bao"}},"role":"app",'
        '"tokenPath":"/var/run/secrets/latchkey.dev/serviceaccount/token",'
        '"secretsDir":"/latchkey/secrets","stateDir":"/var/run/latchkey.dev/state",'
        '"files":[],"env":[],"refreshSeconds":300,"onChange":[]}'
    )


def test_as_dict_gives_lists_and_no_none() -> None:
    data = as_dict(FULL)
    assert data["store"]["endpoints"] == {"sts": "https://s.x"}
    assert data["renders"][0]["uses"] == ["api"]
    assert data["files"][1] == {
        "name": "cfg",
        "path": "app/cfg",
        "template": "${user}",
        "mode": 288,
    }


STORES = [
    VaultStore(address="https://bao:8200", auth=VaultAuth(audience="bao")),
    VaultStore(
        address="https://vault:8200",
        ca_bundle="PEM",
        namespace="team",
        auth=VaultAuth(method="kubernetes", mount="k8s", audience="vault"),
    ),
    AwsStore(region="eu-west-1"),
    AwsStore(
        region="eu-west-1",
        role_arn="arn:aws:iam::123456789012:role/app",
        endpoint_url="http://localhost:4566",
    ),
    GcpStore(workload_identity_provider=PROVIDER),
    GcpStore(
        project="shop-prod",
        workload_identity_provider=PROVIDER,
        service_account="app@shop-prod.iam.gserviceaccount.com",
        endpoints=GcpEndpoints(
            sts="https://s.x", iamcredentials="https://i.x", secretmanager="https://m.x"
        ),
        ca_bundle="PEM",
    ),
    AzureStore(
        vault_url="https://shop.vault.azure.net",
        tenant_id="72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id="6e3a5b3c-1f2d-4c8e-9a7b-0d4e5f6a7b8c",
    ),
]
# Every combination of a file's optional fields, set or left None.
FORMATS: list[Format | None] = [None, "yaml"]
FILES = tuple(
    SecretFile(name=f"f{i}", path="app/x", key=key, format=fmt, template=template)
    for i, (key, fmt, template) in enumerate(
        itertools.product([None, "k"], FORMATS, [None, "${k}"])
    )
)


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("with_env", [False, True])
def test_to_json_is_the_generic_encoding(store: AnyStore, with_env: bool) -> None:
    """to_json is as_dict's data without the empty lists a pod rarely has."""
    config = AgentConfig(
        store=store,
        role="app",
        files=FILES,
        sources=(SourceSecret(name="s0", path="app/s"), SourceSecret(name="s1", path="a", key="k")),
        env=(EnvSecret(name="TOKEN", path="app/api", key="token"),) if with_env else (),
        env_file="/var/run/latchkey.dev/bin/env" if with_env else None,
        wrapper_dir="/var/run/latchkey.dev/bin" if with_env else None,
    )
    data = as_dict(config)
    for name in ("renders", "certificates"):
        del data[name]
    assert config.to_json() == msgspec.json.encode(data).decode()
