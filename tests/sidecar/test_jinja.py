"""``jinja-`` files: templates over several secrets, rendered in Jinja2's sandbox with
bounds; admission refuses what names undeclared secrets; the agent renders them
from a real OpenBao and again when either secret changes."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.agent import Agent
from sidecar.errors import RenderError
from sidecar.jinja import render
from tests.polling import wait_for
from tests.sidecar.agent_helpers import App
from tests.sidecar.inproc import make_agent
from webhook.errors import Denied
from webhook.mutate import mutate_pod
from webhook.settings import load_config

SECRETS = {"db": {"user": "app", "password": "pa'ss: word"}, "api": {"key": "k-1", "n": 3}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param("{{ secrets.db.user }}@{{ secrets['api'].key }}", "app@k-1", id="two-secrets"),
        pytest.param("p: {{ secrets.db.password | toyaml }}", "p: 'pa''ss: word'", id="toyaml"),
        pytest.param("{{ secrets.api | tojson }}", '{"key": "k-1", "n": 3}', id="tojson"),
        pytest.param("{{ secrets.db.user | b64encode }}", "YXBw", id="b64encode"),
        pytest.param("{{ 'YXBw' | b64decode }}", "app", id="b64decode"),
        pytest.param("{{ secrets.db.port | default(5432) }}", "5432", id="default"),
        pytest.param("{% for k, v in secrets.api | dictsort %}{{ k }}={{ v }};{% endfor %}",
                     "key=k-1;n=3;", id="loop-over-keys"),
    ],
)  # fmt: skip
def test_the_language(template: str, expected: str) -> None:
    assert render("app.conf", template, SECRETS).decode() == expected


# Each refused with a RenderError naming the file and the rule, never a value.
ESCAPES = [
    pytest.param("{{ secrets.__class__ }}", "sandbox", id="dunder-attribute"),
    pytest.param("{{ secrets.db.__class__.__mro__ }}", "sandbox", id="mro"),
    pytest.param("{{ secrets.db.items.__self__ }}", "sandbox", id="bound-method-self"),
    pytest.param("{{ ''.__class__.__subclasses__() }}", "sandbox", id="subclasses"),
    pytest.param("{{ cycler.__init__.__globals__ }}", "sandbox", id="no-globals"),
    pytest.param("{% for i in range(10**9) %}{% endfor %}", "may not use **", id="power"),
    pytest.param("{% for i in range(1000000) %}{% endfor %}", "more than 100000 items",
                 id="huge-range"),
    pytest.param("{% for i in range(400) %}{% for j in range(400) %}{% endfor %}{% endfor %}",
                 "more than 100000 items", id="nested-loops"),
    pytest.param("{{ 'x' * 100000000 }}", "more than 100000 items", id="huge-repetition"),
    pytest.param("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed too deep",
                 id="recursion"),
    pytest.param("{% include 'x' %}", "template", id="no-loader"),
    pytest.param("{{ secrets.db.pasword }}", "has no attribute 'pasword'", id="missing-field"),
]  # fmt: skip


@pytest.mark.parametrize(("template", "message"), ESCAPES)
def test_the_sandbox_refuses(template: str, message: str) -> None:
    with pytest.raises(RenderError) as refused:
        render("app.conf", template, SECRETS)
    text = str(refused.value)
    assert text.startswith("file app.conf: ")
    assert message in text
    for value in ("pa'ss: word", "k-1"):
        assert value not in text


def test_output_is_bounded() -> None:
    big = {"db": {"blob": "y" * (600 * 1024)}}
    with pytest.raises(RenderError, match="output is over 1048576 bytes"):
        render("big", "{{ secrets.db.blob }}{{ secrets.db.blob }}", big)


CONFIG = load_config(Path(__file__).parents[1] / "fixtures" / "config.yaml")


def _pod(annotations: dict[str, str]) -> dict[str, Any]:
    base = {"latchkey.dev/inject": "true"}
    spec = {"securityContext": {"runAsUser": 1000}, "containers": [{"name": "app", "image": "a"}]}
    return {"metadata": {"annotations": base | annotations}, "spec": spec}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        pytest.param({"latchkey.dev/jinja-app.yaml": "{{ secrets.db.password }}"},
                     "annotation latchkey.dev/jinja-app.yaml: uses secrets.db, which the pod "
                     "does not declare", id="undeclared"),
        pytest.param({"latchkey.dev/source-db": "secret/data/db",
                      "latchkey.dev/jinja-app.yaml": "{{ secrets.db.password"},
                     "annotation latchkey.dev/jinja-app.yaml: the template does not parse: line 1",
                     id="syntax"),
        pytest.param({"latchkey.dev/source-db": "secret/data/db",
                      "latchkey.dev/jinja-app.yaml": "{{ secrets[name].x }}"},
                     "name each secret as secrets.NAME", id="dynamic-name"),
        pytest.param({"latchkey.dev/source-db": "secret/data/db",
                      "latchkey.dev/jinja-app.yaml": "{{ secrets.db.x }}{{ os }}"},
                     "unknown variable os", id="other-variable"),
        pytest.param({"latchkey.dev/source-db": "secret/data/db",
                      "latchkey.dev/jinja-app.yaml": "{{ secrets | tojson }}"},
                     "use secrets.NAME, not secrets as a whole", id="whole"),
    ],
)  # fmt: skip
def test_admission_names_the_template(annotations: dict[str, str], message: str) -> None:
    with pytest.raises(Denied) as denied:
        mutate_pod(_pod(annotations), namespace="shop", config=CONFIG)
    assert message in str(denied.value)


def test_a_pod_wanting_only_the_combined_file_gets_only_that_file() -> None:
    annotations = {
        "latchkey.dev/source-db": "secret/data/shop/db",
        "latchkey.dev/source-api": "secret/data/shop/api#key",
        "latchkey.dev/jinja-app.yaml": "db: {{ secrets.db.password }}\napi: {{ secrets.api.key }}",
        "latchkey.dev/file-mode-app.yaml": "0440",
    }
    mutation = mutate_pod(_pod(annotations), namespace="shop", config=CONFIG)
    assert mutation.pod is not None
    (agent,) = mutation.pod["spec"]["initContainers"]
    config = yaml.safe_load(agent["env"][0]["value"])
    assert config.get("files", []) == []
    assert [r["name"] for r in config["renders"]] == ["app.yaml"]
    assert config["renders"][0]["uses"] == ["api", "db"]
    assert config["renders"][0]["mode"] == 0o440


def test_the_agent_renders_from_two_secrets_and_again_when_either_changes(
    app: App, running: Callable[[Agent], threading.Event]
) -> None:
    template = "user={{ secrets.db.username }}\npass={{ secrets.db.password }}\n" + (
        "api={{ secrets.api.api_key }}\n"
    )
    config = app.config(
        files=[],
        env=[],
        envFile=None,
        sources=[{"name": "db", "path": app.db_path}, {"name": "api", "path": app.kv1_path}],
        renders=[{"name": "app.conf", "template": template, "uses": ["api", "db"]}],
    )
    agent, _, stream = make_agent(config, timeout=1.0)
    running(agent)
    target = app.file("app.conf")
    wait_for(lambda: target.exists(), timeout=20)
    values = app.values
    assert target.read_text() == (
        f"user={values['username']}\npass={values['password']}\napi={values['api_key']}\n"
    )
    assert oct(target.stat().st_mode & 0o777) == oct(0o400)
    assert sorted(p.name for p in target.parent.iterdir()) == ["app.conf"], "no file per secret"
    app.put_db("new-user", "new-password")
    wait_for(lambda: "pass=new-password" in target.read_text(), timeout=20)
    app.store.put_kv1(f"{app.name}/api", {"api_key": "rotated-key"})
    wait_for(lambda: "api=rotated-key" in target.read_text(), timeout=20)
    app.assert_no_value(stream.getvalue())


def test_the_plain_path_never_imports_jinja() -> None:
    """The agent's start time is a feature: pods without jinja- files do not pay for it."""
    code = (
        "import sys; import sidecar.cli, sidecar.agent, sidecar.render, sidecar.stores.vault; "
        "print('jinja2' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
