"""Every annotation of SPEC.md, good and bad: a denial always names the full annotation key."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.config import HttpAction, SignalAction
from webhook import values
from webhook.errors import AnnotationError, AnnotationErrors, Denied
from webhook.mutate import mutate_pod
from webhook.settings import WebhookConfig, load_config
from webhook.targets import posix

CONFIG = load_config(Path(__file__).parents[1] / "fixtures" / "config.yaml")
K = "latchkey.dev/"
BASE = {K + "inject": "true", K + "secret-db": "secret/data/db"}


def pod(annotations: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """An opted-in pod: ``app`` has a command and runs as 1000, ``worker`` has neither."""
    merged = {k: v for k, v in {**BASE, **annotations}.items() if v is not None}
    return {
        "metadata": {"generateName": "shop-", "annotations": merged},
        "spec": {
            "initContainers": [
                {"name": "istio-init", "image": "proxy"},
                {"name": "setup", "image": "s"},
            ],
            "containers": [
                {
                    "name": "app",
                    "image": "app:1",
                    "command": ["/app"],
                    "env": [{"name": "EXISTING", "value": "1"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    "securityContext": {"runAsUser": 1000},
                },
                {"name": "worker", "image": "worker:1"},
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
            **spec,
        },
    }


def denial(annotations: dict[str, Any], *, namespace: str = "shop", **spec: Any) -> Denied:
    with pytest.raises(Denied) as info:
        mutate_pod(pod(annotations, **spec), namespace=namespace, config=CONFIG)
    return info.value


APP_ONLY = {K + "containers": "app"}
AWS = {K + "store": "aws", K + "secret-db": "secretsmanager:db"}

BAD = [
    # inject, status and unknown keys
    pytest.param({K + "inject": "yes"}, "inject", "is not a boolean", id="inject-yes"),
    pytest.param({K + "inject": True}, "inject", "not a string; quote it", id="inject-yaml-bool"),
    pytest.param(
        {K + "secrets-db": "x"}, "secrets-db", f"did you mean {K}secret-db?", id="typo-secrets"
    ),
    pytest.param(
        {K + "mountpath": "/x"}, "mountpath", f"did you mean {K}mount-path?", id="typo-mountpath"
    ),
    pytest.param(
        {K + "filemode-db": "0400"},
        "filemode-db",
        f"did you mean {K}file-mode-db?",
        id="typo-filemode",
    ),
    pytest.param({K + "refesh": "1m"}, "refesh", f"did you mean {K}refresh?", id="typo-refresh"),
    pytest.param(
        {K + "zzz": "1"},
        "zzz",
        "unknown annotation; valid keys under latchkey.dev/: inject, store, role,",
        id="unknown-no-suggestion",
    ),
    pytest.param({K + "secret-db": None}, "inject", "asks for no secrets", id="no-secrets"),
    # store and role
    pytest.param(
        {K + "store": "prod"},
        "store",
        'no store named "prod" in the webhook config; valid: aws, azure, default, gcp, team-vault',
        id="store-unknown",
    ),
    pytest.param(
        {**AWS, K + "role": "app"}, "role", "is not an IAM role ARN", id="role-aws-not-arn"
    ),
    pytest.param({K + "role": "my role"}, "role", "is not a role name", id="role-space"),
    # secret-<name>
    pytest.param(
        {K + "secret-DB": "secret/data/db"},
        "secret-DB",
        "is not a file name",
        id="secret-name-upper",
    ),
    pytest.param({K + "secret-db": ""}, "secret-db", "is not a store path", id="secret-empty"),
    pytest.param(
        {K + "secret-db": "/secret/data/db"},
        "secret-db",
        "no leading or trailing '/'",
        id="secret-leading-slash",
    ),
    pytest.param(
        {K + "secret-db": "secret/../db"}, "secret-db", "'..' segments", id="secret-dotdot"
    ),
    pytest.param(
        {K + "secret-db": "secret/data/db#"},
        "secret-db",
        "empty or unprintable field",
        id="secret-empty-key",
    ),
    pytest.param(
        {**AWS, K + "secret-db": "secret/data/db"},
        "secret-db",
        'aws store path "secret/data/db" is not valid: it starts with neither',
        id="secret-aws-path",
    ),
    pytest.param({K + "secret-db": 5}, "secret-db", "is not a string", id="secret-not-string"),
    # format-, template-, file-mode-
    pytest.param(
        {K + "format-db": "xml"},
        "format-db",
        "valid: json, yaml, env, dotenv, raw",
        id="format-unknown",
    ),
    pytest.param(
        {K + "format-db": "raw"},
        "format-db",
        'raw needs one field: write the secret as "path#key"',
        id="raw-without-key",
    ),
    pytest.param(
        {K + "format-api": "json"},
        "format-api",
        f"no {K}secret-api for it",
        id="format-without-secret",
    ),
    pytest.param(
        {K + "template-db": "${user"},
        "template-db",
        "is not a valid template",
        id="template-invalid",
    ),
    pytest.param(
        {K + "template-api": "${x}"},
        "template-api",
        f"no {K}secret-api for it",
        id="template-without-secret",
    ),
    pytest.param(
        {K + "file-mode-db": "999"},
        "file-mode-db",
        "is not an octal file mode",
        id="file-mode-digits",
    ),
    pytest.param(
        {K + "file-mode-db": "u+r"},
        "file-mode-db",
        "is not an octal file mode",
        id="file-mode-symbolic",
    ),
    pytest.param(
        {K + "file-mode-api": "0400"},
        "file-mode-api",
        f"no {K}secret-api for it",
        id="file-mode-without-secret",
    ),
    # env-<VAR>
    pytest.param(
        {**APP_ONLY, K + "env-1X": "s/p#k"}, "env-1X", "is not an env var name", id="env-name"
    ),
    pytest.param(
        {**APP_ONLY, K + "env-DB": "secret/data/db"},
        "env-DB",
        "has no field: use path#key",
        id="env-no-key",
    ),
    pytest.param(
        {K + "env-DB": "secret/data/db#pw"},
        "env-DB",
        "the original command is unknown: set `command` on container worker",
        id="env-no-command",
    ),
    pytest.param(
        {**APP_ONLY, K + "env-EXISTING": "s/p#k"},
        "env-EXISTING",
        "container app already defines EXISTING",
        id="env-clash",
    ),
    # containers
    pytest.param(
        {K + "containers": "app,app"},
        "containers",
        '"app" named more than once',
        id="containers-duplicate",
    ),
    pytest.param(
        {K + "containers": "app,nope"},
        "containers",
        'no container named "nope"; valid: app, istio-init, setup, worker',
        id="containers-unknown",
    ),
    pytest.param(
        {K + "containers": "App"}, "containers", "is not a container name", id="containers-upper"
    ),
    pytest.param(
        {K + "containers": "app,"},
        "containers",
        "is not a container name",
        id="containers-empty-entry",
    ),
    pytest.param(
        {K + "containers": "istio-init"},
        "containers",
        "istio-init runs before the latchkey agent",
        id="containers-mesh-init",
    ),
    # mount-path
    pytest.param(
        {K + "mount-path": "secrets"},
        "mount-path",
        "is not a usable mount path",
        id="mount-relative",
    ),
    pytest.param(
        {K + "mount-path": "/"}, "mount-path", "is not a usable mount path", id="mount-root"
    ),
    pytest.param(
        {K + "mount-path": "/a/../b"}, "mount-path", "is not a usable mount path", id="mount-dotdot"
    ),
    pytest.param({K + "mount-path": "/x/"}, "mount-path", "normalised", id="mount-trailing-slash"),
    pytest.param(
        {K + "mount-path": "/var/run/latchkey.dev"},
        "mount-path",
        "overlaps a directory latchkey uses",
        id="mount-reserved",
    ),
    pytest.param(
        {K + "mount-path": "/data"},
        "mount-path",
        "container app already mounts a volume at /data",
        id="mount-clash",
    ),
    # init-only, refresh, on-change
    pytest.param(
        {K + "init-only": "True"}, "init-only", 'use "true" or "false"', id="init-only-bool"
    ),
    pytest.param(
        {K + "init-only": "true", K + "on-change": "http://localhost:1/"},
        "on-change",
        "cannot be used with init-only",
        id="init-only-on-change",
    ),
    pytest.param(
        {K + "init-only": "true", K + "refresh": "1m"},
        "refresh",
        "cannot be used with init-only",
        id="init-only-refresh",
    ),
    pytest.param({K + "refresh": "0s"}, "refresh", "is outside 1s to 24h", id="refresh-zero"),
    pytest.param({K + "refresh": "25h"}, "refresh", "is outside 1s to 24h", id="refresh-too-long"),
    pytest.param(
        {K + "refresh": "5 minutes"}, "refresh", "is not a duration such as 30s", id="refresh-words"
    ),
    pytest.param(
        {K + "on-change": "signal:KILL:app"},
        "on-change",
        "is not a signal a process can catch",
        id="signal-kill",
    ),
    pytest.param(
        {K + "on-change": "signal:HUP"}, "on-change", "names no container", id="signal-no-container"
    ),
    pytest.param(
        {**APP_ONLY, K + "on-change": "signal:HUP:nope"},
        "on-change",
        'no container named "nope" to signal; valid: app, worker',
        id="signal-unknown-container",
    ),
    pytest.param(
        {K + "on-change": "signal:HUP:app"},
        "on-change",
        "do not share one uid: set securityContext.runAsUser: 1000 on each of them",
        id="signal-selected-uids-differ",
    ),
    pytest.param(
        {**APP_ONLY, K + "on-change": "signal:HUP:worker"},
        "on-change",
        "signalling worker needs the agent to run as its uid, and the spec gives it no non-root "
        "uid: set securityContext.runAsUser on container worker or the pod",
        id="signal-target-uid-unknown",
    ),
    pytest.param(
        {K + "on-change": "https://localhost:8080/reload"},
        "on-change",
        "is not an action",
        id="on-change-https",
    ),
    pytest.param(
        {K + "on-change": "http://example.com:80/reload"},
        "on-change",
        "is not an action",
        id="on-change-remote",
    ),
    pytest.param(
        {K + "on-change": "http://localhost:70000/"},
        "on-change",
        "is not an action",
        id="on-change-port",
    ),
    # agent-cpu, agent-memory
    pytest.param(
        {K + "agent-cpu": "lots"}, "agent-cpu", "is not a Kubernetes quantity", id="agent-cpu"
    ),
    pytest.param(
        {K + "agent-memory": "1 GiB"},
        "agent-memory",
        "is not a Kubernetes quantity",
        id="agent-memory",
    ),
]


def test_signal_target_with_another_uid_is_told_which_uid_to_set() -> None:
    spec = pod({**APP_ONLY, K + "on-change": "signal:HUP:worker"})["spec"]
    spec["containers"][1]["securityContext"] = {"runAsUser": 2000, "runAsGroup": 0}
    error = denial({**APP_ONLY, K + "on-change": "signal:HUP:worker"}, **spec)
    assert "signalling worker needs the agent to run as its uid 2000, but the agent runs as " in (
        str(error)
    )
    assert "set securityContext.runAsUser: 1000 on container worker" in str(error)


def test_signal_target_gid_does_not_matter() -> None:
    """Same uid, another primary group (or group 0): allowed, the mark finds it anyway."""
    spec = pod({})["spec"]
    spec["containers"][1]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 0}
    annotations = {**BASE, K + "containers": "app,worker", K + "on-change": "signal:HUP:worker"}
    mutation = mutate_pod(pod(annotations, **spec), namespace="shop", config=CONFIG)
    assert mutation.pod is not None
    worker = mutation.pod["spec"]["containers"][1]
    mark = "/var/run/latchkey.dev/signal-target/worker"
    expected = {"name": "latchkey-signal-mark", "readOnly": True, "mountPath": mark}
    assert expected in worker["volumeMounts"]


def test_signal_target_mounting_under_the_mark_dir_is_denied() -> None:
    spec = pod({})["spec"]
    spec["containers"][0]["volumeMounts"].append(
        {"name": "data", "mountPath": "/var/run/latchkey.dev/signal-target"}
    )
    error = denial({K + "on-change": "signal:HUP:app", **APP_ONLY}, **spec)
    assert "container app already mounts a volume under /var/run/latchkey.dev/signal-target" in (
        str(error)
    )


@pytest.mark.parametrize(("annotations", "name", "fragment"), BAD)
def test_bad_annotation_is_denied_by_name(
    annotations: dict[str, Any], name: str, fragment: str
) -> None:
    error = denial(annotations)
    assert isinstance(error, AnnotationError), str(error)
    assert error.annotation == K + name
    assert str(error).startswith(f"annotation {K}{name}: ")
    assert fragment in str(error)


@pytest.mark.parametrize(
    ("namespace", "spec", "fragment"),
    [
        pytest.param("kube-system", {}, "system namespace kube-system", id="kube-system"),
        pytest.param("kube-public", {}, "system namespace kube-public", id="kube-public"),
        pytest.param(
            "shop",
            {"initContainers": [{"name": "latchkey-init", "image": "x"}]},
            "already has a container named latchkey-init",
            id="container-name-taken",
        ),
        pytest.param("shop", {"containers": []}, "no containers to give", id="no-containers"),
        pytest.param(
            "shop",
            {"volumes": [{"name": "latchkey-secrets", "emptyDir": {}}]},
            "already has a volume named latchkey-secrets",
            id="volume-name-taken",
        ),
    ],
)
def test_pod_level_refusals_name_inject(
    namespace: str, spec: dict[str, Any], fragment: str
) -> None:
    error = denial({K + "containers": None}, namespace=namespace, **spec)
    assert str(error).startswith(f"annotation {K}inject: ")
    assert fragment in str(error)


def test_aws_store_without_role_needs_one() -> None:
    stores = {"aws": msgspec.structs.replace(CONFIG.stores["aws"], role_arn=None)}
    config = CONFIG.model_copy(update={"stores": stores})
    with pytest.raises(AnnotationError, match=f"annotation {K}role: store aws has no roleArn"):
        mutate_pod(pod({**AWS, K + "containers": "app"}), namespace="a", config=config)


def test_default_store_missing_names_store() -> None:
    config = CONFIG.model_copy(update={"stores": {"aws": CONFIG.stores["aws"]}})
    with pytest.raises(AnnotationError, match=f'annotation {K}store: no store named "default"'):
        mutate_pod(pod({K + "containers": "app"}), namespace="a", config=config)


def test_every_problem_in_one_denial_sorted() -> None:
    error = denial({K + "refresh": "0s", K + "agent-cpu": "lots", K + "bogus": "1"})
    assert isinstance(error, AnnotationErrors)
    assert error.annotations == (K + "agent-cpu", K + "bogus", K + "refresh")
    parts = str(error).split("\n")
    assert parts == sorted(parts)
    assert [p.split(":")[0] for p in parts] == [f"annotation {a}" for a in error.annotations]


def test_denial_is_bounded_and_echoes_no_long_values() -> None:
    long = "A" * 10_000
    many = {f"{K}bogus-{i}": long for i in range(100)}
    error = denial({**many, K + "secret-db": "secret/" + long + "#"})
    assert len(str(error)) < 8_000
    assert "A" * 100 not in str(error)
    assert str(error).endswith("\nand 81 more")


@pytest.mark.parametrize(
    ("text", "actions"),
    [
        pytest.param("signal:HUP:app", (SignalAction(signal="SIGHUP", container="app"),), id="hup"),
        pytest.param(
            "signal:SIGHUP:app", (SignalAction(signal="SIGHUP", container="app"),), id="sighup"
        ),
        pytest.param(
            "signal:usr1:app", (SignalAction(signal="SIGUSR1", container="app"),), id="lower"
        ),
        pytest.param(
            "http://localhost:9090/-/reload",
            (HttpAction(url="http://localhost:9090/-/reload"),),
            id="http",
        ),
        pytest.param(
            "http://127.0.0.1:80", (HttpAction(url="http://127.0.0.1:80"),), id="http-no-path"
        ),
        pytest.param(
            "signal:TERM:a, http://localhost:1/x",
            (SignalAction(signal="SIGTERM", container="a"), HttpAction(url="http://localhost:1/x")),
            id="two",
        ),
    ],
)
def test_on_change_values(text: str, actions: tuple[object, ...]) -> None:
    assert values.on_change(text) == actions


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        pytest.param(values.refresh, "1s", 1, id="refresh-min"),
        pytest.param(values.refresh, "24h", 86400, id="refresh-max"),
        pytest.param(values.refresh, "1h30m", 5400, id="refresh-mixed"),
        pytest.param(values.file_mode, "0440", 0o440, id="mode-4-digits"),
        pytest.param(values.file_mode, "600", 0o600, id="mode-3-digits"),
        pytest.param(values.quantity, "0.5", "0.5", id="quantity-decimal"),
        pytest.param(values.mount_path, "/etc/app/secrets", "/etc/app/secrets", id="mount-path"),
        pytest.param(values.container_names, " app , worker", ("app", "worker"), id="names-spaces"),
    ],
)
def test_good_values(parse: Any, text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("value", "store", "expected"),
    [
        pytest.param(
            "secret/data/db#pass#word", "default", ("secret/data/db#pass", "word"), id="last-hash"
        ),
        pytest.param("database/creds/app", "default", ("database/creds/app", None), id="no-key"),
        pytest.param("ssm:/app/prod/*", "aws", ("ssm:/app/prod/*", None), id="ssm-wildcard"),
        pytest.param("ssm:/app/db#url", "aws", ("ssm:/app/db", "url"), id="ssm-key"),
        pytest.param(
            "secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:x-Ab#k",
            "aws",
            ("secretsmanager:arn:aws:secretsmanager:eu-west-1:1:secret:x-Ab", "k"),
            id="sm-arn",
        ),
        pytest.param("db-password", "gcp", ("db-password", None), id="gcp-short"),
        pytest.param("db@7#user", "gcp", ("db@7", "user"), id="gcp-version-key"),
        pytest.param(
            "projects/other-proj/secrets/db/versions/latest",
            "gcp",
            ("projects/other-proj/secrets/db/versions/latest", None),
            id="gcp-full",
        ),
        pytest.param("db-password#user", "azure", ("db-password", "user"), id="azure-name"),
        pytest.param(
            "db/0123456789abcdef0123456789abcdef",
            "azure",
            ("db/0123456789abcdef0123456789abcdef", None),
            id="azure-version",
        ),
    ],
)
def test_store_paths(value: str, store: str, expected: tuple[str, str | None]) -> None:
    got = values.store_path(value, store=CONFIG.stores[store], key_required=False)
    assert got == expected


@pytest.mark.parametrize(
    ("value", "store", "says"),
    [
        pytest.param("secret/data/", "default", "no leading or trailing '/'", id="vault-slash"),
        pytest.param(
            "secret/db", "aws", "starts with neither 'secretsmanager:'", id="aws-vault-path"
        ),
        pytest.param("secret/data/db", "gcp", "'/' is only valid in the full", id="gcp-slash"),
        pytest.param("db@0", "gcp", "a version is latest, a number from 1", id="gcp-version"),
        pytest.param(
            "projects/P/secrets/db/versions/1", "gcp", "not a project id", id="gcp-project"
        ),
        pytest.param("db_password", "azure", "characters Key Vault does not allow", id="az-name"),
        pytest.param("db/v2", "azure", "32 hex digits", id="azure-version"),
    ],
)
def test_store_paths_refused_say_what_is_valid(value: str, store: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as refused:
        values.store_path(value, store=CONFIG.stores[store], key_required=False)
    assert json.dumps(value) in str(refused.value)


def test_gcp_short_name_needs_a_project() -> None:
    store = msgspec.structs.replace(CONFIG.stores["gcp"], project=None)
    with pytest.raises(ValueError, match="the store has no project"):
        values.store_path("db", store=store, key_required=False)


@pytest.mark.parametrize(
    ("store", "good", "bad", "says"),
    [
        pytest.param(
            "gcp",
            "api@shop-prod.iam.gserviceaccount.com",
            "api@shop-prod",
            "service account",
            id="gcp",
        ),
        pytest.param(
            "azure", "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "api", "client id", id="azure"
        ),
        pytest.param("aws", "arn:aws:iam::123456789012:role/api", "api", "IAM role ARN", id="aws"),
    ],
)
def test_roles_by_store_kind(store: str, good: str, bad: str, says: str) -> None:
    assert values.role(good, store=CONFIG.stores[store]) == good
    with pytest.raises(ValueError, match=says):
        values.role(bad, store=CONFIG.stores[store])


def test_config_used_here_is_the_fixture() -> None:
    assert isinstance(CONFIG, WebhookConfig)
    assert sorted(CONFIG.stores) == ["aws", "azure", "default", "gcp", "team-vault"]


@pytest.mark.parametrize(
    ("annotations", "name", "message"),
    [
        pytest.param(
            {K + "file-mode-db": 0o440}, "file-mode-db",
            'is the number 288: YAML read the unquoted 0440 as octal; quote it: '
            'latchkey.dev/file-mode-db: "0440"',
            id="unquoted-octal-mode",
        ),
        pytest.param(
            {K + "inject": True}, "inject",
            'is not a string; quote it in YAML: latchkey.dev/inject: "true"',
            id="unquoted-bool",
        ),
        pytest.param(
            {K + "file-mode-dB": "0440"}, "file-mode-dB",
            "names are lower case: \"db\"", id="upper-case-name",
        ),
        pytest.param(
            {K + "secret-DB": "secret/data/db"}, "secret-DB",
            "names are lower case: \"db\"", id="upper-case-secret",
        ),
    ],
)  # fmt: skip
def test_messages_say_how_to_write_it(annotations: dict[str, Any], name: str, message: str) -> None:
    error = denial(annotations)
    assert f"annotation {K}{name}: " in str(error)
    assert message in str(error)


def test_a_misspelt_secret_key_is_the_only_problem_named() -> None:
    error = denial({K + "secret-db": None, K + "secrt-db": "secret/data/db"})
    assert str(error) == (f"annotation {K}secrt-db: unknown annotation; did you mean {K}secret-db?")


@pytest.mark.parametrize(
    ("worker", "fragment"),
    [
        pytest.param({"runAsUser": 1000}, "container worker, which does not get the secrets, "
                     "runs as uid 1000: it could read them through /proc", id="same-uid"),
        pytest.param({"runAsUser": 2000, "capabilities": {"add": ["SYS_PTRACE"]}},
                     "adds CAP_SYS_PTRACE", id="ptrace"),
    ],
)  # fmt: skip
def test_a_signal_does_not_widen_who_reads_the_secrets(
    worker: dict[str, Any], fragment: str
) -> None:
    spec = pod({})["spec"]
    spec["containers"][1]["securityContext"] = worker
    error = denial({**APP_ONLY, K + "on-change": "signal:HUP:app"}, **spec)
    assert fragment in str(error)
    assert "use an http://localhost on-change" in str(error)


def test_a_left_out_container_of_unknown_uid_is_warned_about() -> None:
    annotations = {**BASE, **APP_ONLY, K + "on-change": "signal:HUP:app"}
    mutation = mutate_pod(pod(annotations), namespace="shop", config=CONFIG)
    (warning,) = [w for w in mutation.warnings if "process namespace" in w]
    assert "container worker, which does not get the secrets, runs as the uid its image" in warning
    other = {**BASE, **APP_ONLY, K + "on-change": "http://localhost:8080/reload"}
    assert not any("process namespace" in w for w in mutate_pod(
        pod(other), namespace="shop", config=CONFIG).warnings)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from("/.a-"), max_size=12) | st.sampled_from(["", "/", "//", "/./"]))
def test_mount_paths_compare_as_pure_posix_paths_do(path: str) -> None:
    assert posix(path) == str(PurePosixPath(path))


@pytest.mark.parametrize("mounted", ["/data/", "/data/.", "/./data", "/data//", "///data"])
def test_a_mount_at_the_same_directory_written_otherwise_clashes(mounted: str) -> None:
    spelt = pod({K + "mount-path": "/data"})
    spelt["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": mounted}]
    with pytest.raises(AnnotationError, match="already mounts a volume at /data"):
        mutate_pod(spelt, namespace="shop", config=CONFIG)
