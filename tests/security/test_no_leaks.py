"""SECURITY.md, "Secret values stay in the secret files": a full run with every feature, then
every output scanned for every value. The webhook never reads the store, so the pod spec it
returns cannot hold a value; the agent never logs one; a pod cannot read another's secrets.

The harness (``tests/e2e/conftest.py``) already scans the webhook log, the admitted pod
specs, every agent container's log and the player's log when a test ends; this test adds
the admission answers (patches, warnings, denial messages) and checks the values did
reach the app, so a scan that finds nothing means something.
"""

from __future__ import annotations

import json

import pytest

from hack.kubelet import PodFailed
from hack.local_webhook import Admission
from tests.e2e.conftest import Flow, app_pod, read
from tests.polling import wait_for

K = "latchkey.dev/"

pytestmark = pytest.mark.e2e


def every_feature(flow: Flow) -> dict[str, str]:
    """Annotations for files in every format, a template, a mode, env vars, refresh, on-change."""
    path = flow.path("db")
    return {
        K + "role": flow.grant(),
        K + "secret-db.json": path,
        K + "secret-db.yaml": path, K + "format-db.yaml": "yaml",
        K + "secret-db.env": path, K + "format-db.env": "env",
        K + "secret-db.sh": path, K + "format-db.sh": "dotenv",
        K + "secret-password": f"{path}#password", K + "file-mode-password": "0400",
        K + "secret-dsn": path, K + "template-dsn": "postgres://app:${password}@db/app",
        K + "env-DB_PASSWORD": f"{path}#password",
        K + "refresh": "1s",
        K + "on-change": "http://localhost:9/-/reload",  # nothing listens: a failure to log
    }  # fmt: skip


def answers(admissions: list[Admission]) -> dict[str, str]:
    """What the API server would get back: patches, warnings and messages, as text."""
    return {
        f"answer {index}": json.dumps([a.patch, a.warnings, a.message, a.allowed])
        for index, a in enumerate(admissions)
    }


def test_no_value_in_any_output_of_a_full_run(flow: Flow) -> None:
    first, second = flow.value("first"), flow.value("second")
    flow.put("db", {"password": first, "user": "app"})
    command = ["sh", "-c", 'echo "app sees ${#DB_PASSWORD} chars"; exec sleep 60']
    admission = flow.admit(app_pod(every_feature(flow), command=command))
    played = flow.play(admission.pod)
    played.wait_ready(30)
    assert read(played, "password") == first  # the values did reach the app
    assert read(played, "dsn") == f"postgres://app:{first}@db/app"
    flow.put("db", {"password": second, "user": "app"})
    wait_for(lambda: second in read(played, "dsn"), timeout=10)  # the rotation
    assert f"app sees {len(first)} chars" in played.logs("app")  # the env var, through the wrapper

    agentless = {k: v for k, v in every_feature(flow).items() if "refresh" not in k}
    agentless = {k: v for k, v in agentless.items() if "on-change" not in k}
    once = flow.admit(app_pod(agentless | {K + "init-only": "true"}, command=["true"]))
    typo = flow.webhook.admit(
        app_pod({K + "secret-db": flow.path("db"), K + "secert-x": first}, command=["true"]),
        namespace=flow.namespace,
    )
    assert not typo.allowed
    outputs = answers([admission, once, typo]) | flow.captured()
    assert [name for name, text in outputs.items() if first in text or second in text] == []


def test_a_pod_cannot_read_secrets_its_service_account_is_not_bound_to(flow: Flow) -> None:
    """The role bound to another service account refuses this pod's token: no file, no value."""
    theirs = flow.value("theirs")
    flow.put("db", {"password": theirs})
    role = flow.grant(service_account="someone-else")
    pod = app_pod(
        {K + "role": role, K + "secret-db": flow.path("db"), K + "init-only": "true"},
        command=["sh", "-c", "cat /latchkey/secrets/db; exec sleep 60"],
    )
    played = flow.play(flow.admit(pod).pod)
    with pytest.raises(PodFailed, match="exited with code 5"):
        played.wait_ready(30)
    assert played.state("app") == "waiting"
    assert theirs not in json.dumps(flow.captured())
