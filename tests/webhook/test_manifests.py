"""``latchkey-webhook inject`` over manifests: every workload's pod template is
injected as the webhook would inject its pods, everything else passes through
byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.webhook.test_app import CONFIG
from webhook.__main__ import main
from webhook.manifests import inject_document, inject_manifests, split_documents

REPO = Path(__file__).resolve().parents[2]
STATUS = "latchkey.dev/status"
ANNOTATIONS = """\
  annotations:
    latchkey.dev/inject: "true"
    latchkey.dev/secret-db: secret/data/shop/db
"""
POD_SPEC = """\
spec:
  serviceAccountName: shop
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: app
      image: registry.example/shop:2.1
      command: [/app/shop]
"""


def _workload(kind: str, api_version: str, name: str, *, annotated: bool = True) -> str:
    """A workload whose pod template is the Pod below, give or take its annotations."""
    template = f"metadata:\n  labels: {{app: {name}}}\n" + (ANNOTATIONS if annotated else "")
    template += POD_SPEC
    head = f"apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    if kind == "CronJob":
        body = '  schedule: "*/5 * * * *"\n  jobTemplate:\n    spec:\n      template:\n'
        return head + body + _indent(template, 8)
    return head + "  template:\n" + _indent(template, 4)


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line for line in text.splitlines(True))


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: shop-debug
  namespace: shop
  annotations:
    latchkey.dev/inject: "true"
    latchkey.dev/secret-db: secret/data/shop/db
spec:
  serviceAccountName: shop
  securityContext: {runAsUser: 1000, runAsGroup: 1000}
  containers:
    - name: app
      image: registry.example/shop:2.1
      command: [/app/shop]
"""
CONFIGMAP = """\
# settings the app reads; not ours to touch
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-settings
data:
  mode: 'production'   # quoted on purpose
  banner: |
    Welcome
"""
PLAIN = _workload("Deployment", "apps/v1", "plain", annotated=False)
FOREIGN_JOB = _workload("Job", "batch.volcano.sh/v1alpha1", "volcano")
WORKLOADS = {
    "Pod": POD,
    "Deployment": _workload("Deployment", "apps/v1", "shop"),
    "StatefulSet": _workload("StatefulSet", "apps/v1", "shop-db"),
    "DaemonSet": _workload("DaemonSet", "apps/v1", "shop-agent"),
    "ReplicaSet": _workload("ReplicaSet", "apps/v1", "shop-rs"),
    "Job": _workload("Job", "batch/v1", "shop-migrate"),
    "CronJob": _workload("CronJob", "batch/v1", "shop-report"),
}
MANIFEST = "---\n".join([*WORKLOADS.values(), CONFIGMAP, PLAIN, FOREIGN_JOB])


def template_of(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]  # type: ignore[no-any-return]
    return doc["spec"]["template"]  # type: ignore[no-any-return]


def assert_injected(doc: dict[str, Any]) -> None:
    template = template_of(doc)
    assert template["metadata"]["annotations"][STATUS] == "injected"
    spec = template["spec"]
    names = [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]
    assert "latchkey-agent" in names or "latchkey-init" in names
    assert any(v["name"] == "latchkey-token" for v in spec["volumes"])


def test_the_manifest_is_well_formed() -> None:
    docs = list(yaml.safe_load_all(MANIFEST))
    assert [d["kind"] for d in docs] == [*WORKLOADS, "ConfigMap", "Deployment", "Job"]
    assert POD.startswith("apiVersion: v1\nkind: Pod\n")
    assert yaml.safe_load(POD)["metadata"]["annotations"]["latchkey.dev/inject"] == "true"


def test_every_workload_is_injected_and_the_rest_passes_through_verbatim() -> None:
    result = inject_manifests(MANIFEST, config=CONFIG, namespace="default")
    docs = list(yaml.safe_load_all(result.text))
    assert [d["kind"] for d in docs] == [*WORKLOADS, "ConfigMap", "Deployment", "Job"]
    for doc in docs[: len(WORKLOADS)]:
        assert_injected(doc)
    assert result.injected == len(WORKLOADS)
    for untouched in (CONFIGMAP, PLAIN, FOREIGN_JOB):
        assert untouched in result.text
    assert docs[-3:] == [yaml.safe_load(d) for d in (CONFIGMAP, PLAIN, FOREIGN_JOB)]
    again = inject_manifests(result.text, config=CONFIG, namespace="default")
    assert again.text == result.text
    assert again.injected == 0


def test_the_template_keeps_the_workload_around_it() -> None:
    source = yaml.safe_load(WORKLOADS["CronJob"])
    injected, _ = inject_document(source, config=CONFIG, namespace="default")
    assert injected["spec"]["schedule"] == source["spec"]["schedule"]
    assert injected["metadata"] == source["metadata"]
    assert "kind" not in template_of(injected)
    assert template_of(injected)["metadata"]["labels"] == {"app": "shop-report"}
    assert STATUS not in template_of(source)["metadata"]["annotations"]


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        pytest.param("a: 1\n", ["a: 1\n"], id="single"),
        pytest.param("a: 1\n---\nb: 2\n", ["a: 1\n", "---\nb: 2\n"], id="two"),
        pytest.param("# top\n---\na: 1\n", ["# top\n", "---\na: 1\n"], id="leading-comment"),
        pytest.param("---\na: |\n  x\n---\n", ["---\na: |\n  x\n", "---\n"], id="trailing"),
        pytest.param("a: '---'\nb: ---x\n", ["a: '---'\nb: ---x\n"], id="dashes-in-values"),
    ],
)
def test_documents_split_at_markers_only(text: str, chunks: list[str]) -> None:
    assert split_documents(text) == chunks
    assert "".join(chunks) == text


def test_a_list_is_injected_item_by_item() -> None:
    items = [yaml.safe_load(WORKLOADS["Deployment"]), yaml.safe_load(CONFIGMAP)]
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items})
    result = inject_manifests(text, config=CONFIG, namespace="default")
    [doc] = yaml.safe_load_all(result.text)
    assert_injected(doc["items"][0])
    assert doc["items"][1] == items[1]


@pytest.mark.parametrize(
    ("doc_namespace", "flag", "excluded"),
    [
        pytest.param(None, None, None, id="default"),
        pytest.param(None, "kube-system", "kube-system", id="flag-used-when-document-names-none"),
        pytest.param("shop", "kube-system", None, id="document-wins-over-flag"),
        pytest.param("kube-public", "shop", "kube-public", id="document-namespace-used"),
    ],
)
def test_the_namespace_is_the_documents_then_the_flag_then_default(
    doc_namespace: str | None, flag: str | None, excluded: str | None
) -> None:
    doc = yaml.safe_load(WORKLOADS["Deployment"])
    if doc_namespace:
        doc["metadata"]["namespace"] = doc_namespace
    text = yaml.safe_dump(doc)
    result = inject_manifests(text, config=CONFIG, namespace=flag or "default")
    if excluded is None:
        assert_injected(yaml.safe_load(result.text))
        return
    assert result.injected == 0
    assert f"excludes namespace {excluded}" in result.warnings[0]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    """The config as an admin writes it, naming the registry the agent image is in."""
    agent = CONFIG.agent.model_copy(update={"image": "registry.example/latchkey-sidecar:0.1.0"})
    config = CONFIG.model_copy(update={"agent": agent})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(by_alias=True, exclude_none=True)))
    return path


def test_the_console_script_prints_the_injected_manifest(tmp_path: Path, config_file: Path) -> None:
    manifest = tmp_path / "all.yaml"
    manifest.write_text(MANIFEST)
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "inject", "--config", str(config_file), "-f", "-"],
        cwd=REPO,
        input=MANIFEST,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(done.stdout))
    for doc in docs[: len(WORKLOADS)]:
        assert_injected(doc)
    assert CONFIGMAP in done.stdout
    assert "Traceback" not in done.stderr


def test_a_denied_manifest_exits_1_naming_the_document_and_annotation(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = WORKLOADS["Job"].replace("secret-db: secret/data/shop/db", "refresh: sometimes")
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(CONFIGMAP + "---\n" + bad)
    with pytest.raises(SystemExit) as exit_:
        main(["inject", "--config", str(config_file), "-f", str(manifest)], {})
    assert exit_.value.code == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("latchkey-webhook: error: denied: Job/shop-migrate: ")
    assert "latchkey.dev/refresh" in err


def test_warnings_go_to_stderr(
    tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown_user = WORKLOADS["Deployment"].replace(
        "securityContext: {runAsUser: 1000, runAsGroup: 1000}", "securityContext: {}"
    )
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(unknown_user)
    main(["inject", "--config", str(config_file), "-f", str(manifest)], {})
    out, err = capsys.readouterr()
    assert_injected(yaml.safe_load(out))
    assert err.startswith("latchkey-webhook: warning: Deployment/shop: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read", id="missing-file"),
        pytest.param("a: [\n", "is not YAML", id="not-yaml"),
    ],
)
def test_unreadable_input_exits_2(
    tmp_path: Path,
    config_file: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    message: str,
) -> None:
    manifest = tmp_path / "in.yaml"
    if content is not None:
        manifest.write_text(content)
    with pytest.raises(SystemExit) as exit_:
        main(["inject", "--config", str(config_file), "-f", str(manifest)], {})
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_text_the_split_cannot_follow_is_dumped_whole() -> None:
    text = "%YAML 1.1\n---\n" + WORKLOADS["Deployment"] + "---\n" + CONFIGMAP
    result = inject_manifests(text, config=CONFIG, namespace="default")
    deployment, configmap = yaml.safe_load_all(result.text)
    assert_injected(deployment)
    assert configmap == yaml.safe_load(CONFIGMAP)
    assert result.injected == 1


@pytest.mark.parametrize(
    ("image", "warns"),
    [
        pytest.param("latchkey-sidecar:0.1.0", True, id="bare-name"),
        pytest.param("latchkey-dev/latchkey-sidecar:0.1.0", True, id="docker-hub-user"),
        pytest.param("registry.example/latchkey-sidecar:0.1.0", False, id="registry-host"),
        pytest.param("registry:5000/latchkey-sidecar:0.1.0", False, id="registry-port"),
        pytest.param("localhost/latchkey-sidecar:0.1.0", False, id="localhost"),
    ],
)
def test_an_agent_image_without_registry_is_warned_about_in_inject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], image: str, warns: bool
) -> None:
    config = CONFIG.model_copy(update={"agent": CONFIG.agent.model_copy(update={"image": image})})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(by_alias=True, exclude_none=True)))
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(WORKLOADS["Deployment"])
    main(["inject", "--config", str(path), "-f", str(manifest)], {})
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if "names no registry" in line
    ]
    if warns:
        assert warnings == [
            f"latchkey-webhook: warning: agent.image {image} names no registry, so nodes would "
            f"pull it from Docker Hub (docker.io/{'' if '/' in image else 'library/'}{image}); "
            "set agent.image in the config to the image you pushed, such as "
            "registry.example/latchkey-sidecar:0.1.0"
        ]
    else:
        assert warnings == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["--version"], "latchkey-webhook 0.1.0", id="version"),
        pytest.param(["--help"], "Serve admission reviews over HTTPS, or print", id="help-plain"),
        pytest.param(["inject", "--help"], "(default: default)", id="inject-namespace-default"),
    ],
)
def test_the_cli_answers_help_and_version_plainly(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv, {})
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert expected in out
    assert "``" not in out


@pytest.mark.parametrize("namespace", ["kube-system", "latchkey"])
def test_a_pod_the_cluster_would_never_send_is_reported(namespace: str) -> None:
    """The preview says what the cluster does: in an excluded namespace, no secrets."""
    result = inject_manifests(WORKLOADS["Deployment"], config=CONFIG, namespace=namespace)
    assert result.injected == 0
    assert result.warnings == (
        "Deployment/shop: would not reach the webhook: the install's namespaceSelector "
        f"excludes namespace {namespace}, so the pod would start without secrets",
    )
