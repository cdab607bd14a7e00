"""The ``LATCHKEY_CONFIG`` text, byte for byte: the webhook writes it, every agent reads it."""

from __future__ import annotations

from sidecar.config import (
    AgentConfig,
    CertificateFile,
    EnvSecret,
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
