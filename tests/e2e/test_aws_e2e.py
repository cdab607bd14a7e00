"""The aws store end to end: the real webhook over HTTPS, the kubelet player, moto.

The admin config names an ``aws`` store (moto on loopback, IAM enforced); the
webhook injects the agent with a projected token for ``sts.amazonaws.com``; the
player runs the pod, the agent assumes the role through web identity and writes
Secrets Manager and SSM values for the app; a rotation reaches the app; a role
that may not read fails the pod. No secret value may show up in the webhook's
log, the admitted pod, or the agent's and player's logs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hack.kubelet import Pod, PodFailed
from hack.local_webhook import LocalWebhook
from hack.localstore import Issuer
from tests.e2e.conftest import Harness, app_pod, read
from tests.motoserver import MotoServer

READ = ["secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParametersByPath"]

pytestmark = pytest.mark.e2e


@dataclass
class Aws:
    server: MotoServer
    reader: str
    ssm_only: str
    webhook: LocalWebhook


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Aws]:
    """moto with two roles for the cluster's issuer, and a webhook whose default store is it."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    provider = server.add_oidc_provider(issuer.issuer)
    reader = server.add_role("e2e-reader", provider_arn=provider, actions=READ)
    ssm_only = server.add_role("e2e-ssm-only", provider_arn=provider, actions=["ssm:GetParameter"])
    store = {"kind": "aws", "region": "us-east-1", "roleArn": reader}
    store["endpointUrl"] = server.endpoint
    webhook = LocalWebhook(
        tmp_path_factory.mktemp("webhook-aws"),
        {"stores": {"default": store}, "agent": {"nativeSidecar": True}},
    )
    webhook.start()
    yield Aws(server, reader, ssm_only, webhook)
    webhook.stop()
    server.stop()


@dataclass(kw_only=True)
class AwsFlow(Harness):
    """The harness on the moto store; ``play`` admits the pod first."""

    aws: Aws

    def play(self, pod: dict[str, Any], **kw: Any) -> Pod:
        return super().play(self.admit(pod).pod, **kw)


@pytest.fixture
def flow(aws: Aws, issuer: Issuer, pod_root: Path) -> Iterator[AwsFlow]:
    harness = AwsFlow(aws=aws, issuer=issuer, webhook=aws.webhook, root=pod_root)
    yield harness
    harness.close()


def test_aws_secrets_reach_the_app_and_a_rotation_follows(flow: AwsFlow) -> None:
    sm, ssm = flow.aws.server.client("secretsmanager"), flow.aws.server.client("ssm")
    name, prefix = f"e2e/{flow.tag}/db", f"/e2e/{flow.tag}/config"
    password, api_key = flow.value("pw"), flow.value("key")
    sm.create_secret(Name=name, SecretString=json.dumps({"username": "app", "password": password}))
    ssm.put_parameter(Name=f"{prefix}/api_key", Value=api_key, Type="SecureString")
    ssm.put_parameter(Name=f"{prefix}/region", Value="eu-west-1", Type="String")
    pod = app_pod(
        {
            "latchkey.dev/secret-db.json": f"secretsmanager:{name}",
            "latchkey.dev/secret-password": f"secretsmanager:{name}#password",
            "latchkey.dev/secret-config.env": f"ssm:{prefix}/*",
            "latchkey.dev/format-config.env": "env",
            "latchkey.dev/refresh": "1s",
        },
        command=["sh", "-c", "echo app started; exec sleep 60"],
    )
    played = flow.play(pod)
    played.wait_ready(30)
    assert json.loads(read(played, "db.json")) == {"username": "app", "password": password}
    assert read(played, "password") == password
    assert read(played, "config.env") == f"api_key={api_key}\nregion=eu-west-1\n"

    rotated = flow.value("pw2")
    new = json.dumps({"username": "app", "password": rotated})
    sm.put_secret_value(SecretId=name, SecretString=new)
    deadline = time.monotonic() + 15
    while read(played, "password") != rotated and time.monotonic() < deadline:
        time.sleep(0.2)
    assert read(played, "password") == rotated
    assert "app started" in played.logs("app")


def test_aws_role_that_may_not_read_fails_the_pod(flow: AwsFlow) -> None:
    name = f"e2e/{flow.tag}/guarded"
    flow.aws.server.client("secretsmanager").create_secret(
        Name=name, SecretString=flow.value("guarded")
    )
    pod = app_pod(
        {
            "latchkey.dev/role": flow.aws.ssm_only,
            "latchkey.dev/secret-guarded": f"secretsmanager:{name}",
            "latchkey.dev/init-only": "true",
        },
        command=["sh", "-c", "echo app ran; exec sleep 60"],
    )
    played = flow.play(pod)
    with pytest.raises(PodFailed) as failed:
        played.wait_ready(30)
    message = str(failed.value)
    assert message.startswith("init container latchkey-init exited with code 6")
    assert "role/e2e-ssm-only" in message
    assert f"secretsmanager:{name}" in message
    assert played.state("app") == "waiting"
