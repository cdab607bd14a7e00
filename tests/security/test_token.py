"""SECURITY.md, "The token the agent logs in with": audience-bound to the store, short-lived
(600 s unless the admin says otherwise, renewed by the kubelet), in a projected volume."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sidecar.config import CONFIG_ENV, TOKEN_DIR, TOKEN_PATH, AgentConfig, parse, store_audience
from tests.security.pods import FIXTURES, Pod, golden_pods, ours
from webhook.containers import TOKEN
from webhook.settings import AgentSettings, load_config

CONFIG = load_config(FIXTURES / "config.yaml")


def token_source(pod: Pod) -> dict[str, Any]:
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == TOKEN)
    (source,) = volume["projected"]["sources"]
    return dict(source["serviceAccountToken"])


@pytest.mark.parametrize("pod", golden_pods())
def test_the_token_is_for_the_chosen_store_only_and_short_lived(pod: Pod) -> None:
    token = token_source(pod)
    agents = [parse(AgentConfig, json.loads(c["env"][0]["value"])) for c in ours(pod)]
    assert all(c["env"][0]["name"] == CONFIG_ENV for c in ours(pod))
    assert {store_audience(agent.store) for agent in agents} == {token["audience"]}
    assert token["expirationSeconds"] == CONFIG.agent.token_expiration_seconds == 600
    assert {agent.token_path for agent in agents} == {str(TOKEN_PATH)}
    for container in ours(pod):
        mount = next(m for m in container["volumeMounts"] if m["name"] == TOKEN)
        assert mount["mountPath"] == str(TOKEN_DIR)


def test_the_default_lifetime_is_600_seconds_and_longer_needs_the_admin() -> None:
    field = AgentSettings.model_fields["token_expiration_seconds"]
    assert field.default == 600
    assert AgentSettings().token_expiration_seconds == 600
    with pytest.raises(ValueError, match="greater than or equal to 600"):
        AgentSettings(token_expiration_seconds=60)
