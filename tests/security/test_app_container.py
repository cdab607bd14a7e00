"""SECURITY.md, "A shell in the app container": the projected token and the store token
are out of its reach, whatever the pod looks like."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.pods import Pod, containers, golden_pods, mounted, ours, theirs
from tests.webhook.test_properties import CLASSIC, NATIVE, requests
from webhook.containers import STATE, TOKEN
from webhook.mutate import mutate_pod
from webhook.settings import WebhookConfig

AGENT_ONLY = {TOKEN, STATE}


def assert_agent_only_volumes(pod: Pod) -> None:
    """The token and state volumes are mounted by latchkey containers and nobody else."""
    for container in theirs(pod):
        assert not mounted(container) & AGENT_ONLY, container["name"]
    for container in ours(pod):
        assert mounted(container) >= AGENT_ONLY, container["name"]
    assert ours(pod), "no latchkey container in an injected pod"


@pytest.mark.parametrize("pod", golden_pods())
def test_token_and_state_are_mounted_only_into_latchkey_containers(pod: Pod) -> None:
    assert_agent_only_volumes(pod)
    assert len(containers(pod)) > len(ours(pod))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.sampled_from([NATIVE, CLASSIC]))
def test_no_generated_pod_gives_an_app_container_the_tokens(
    request: tuple[dict[str, Any], dict[str, str]], config: WebhookConfig
) -> None:
    pod, _ = request
    mutation = mutate_pod(pod, namespace="apps", config=config)
    assert_agent_only_volumes(jsonpatch.apply_patch(pod, mutation.patch))


@pytest.mark.parametrize("pod", golden_pods())
def test_the_agent_only_reads_its_token(pod: Pod) -> None:
    for container in ours(pod):
        token = next(m for m in container["volumeMounts"] if m["name"] == TOKEN)
        assert token["readOnly"] is True


@pytest.mark.parametrize("pod", golden_pods())
def test_a_shared_process_namespace_only_for_a_signal_on_change(pod: Pod) -> None:
    """Sharing PIDs lets the app see into the agent (/proc/<pid>/root): only when asked for."""
    asked = "signal:" in pod["metadata"]["annotations"].get("latchkey.dev/on-change", "")
    assert pod["spec"].get("shareProcessNamespace", False) is asked
