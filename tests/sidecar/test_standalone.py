"""The standalone agent on a laptop or in CI, against a real OpenBao, with each way in:
a service-account token from ``kubectl create token`` (``--token-path``), and a store
token (``--auth-method token``) from ``$BAO_TOKEN`` or ``--store-token-file``.

Off a cluster, with flags only, the files go under the current directory. The
commands and their output form ``docs/standalone.md``'s transcript, which this test
compares with what it ran (``LATCHKEY_UPDATE_GOLDEN=1`` rewrites it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hack.localstore import OpenBao
from tests.sidecar.agent_helpers import App

DOC = Path(__file__).parents[2] / "docs" / "standalone.md"
BEGIN, END = "<!-- transcript: begin -->", "<!-- transcript: end -->"
UPDATE = os.environ.get("LATCHKEY_UPDATE_GOLDEN") == "1"
OUTSIDE = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST",)}


def run(app: App, cwd: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """The console agent, as a user runs it from ``cwd``; its exit code and stderr."""
    common = ["--address", app.store.address, "--ca-file", "ca.crt", "--once"]
    secrets = ["--secret", f"db.json={app.db_path}", "--secret", f"password={app.db_path}#password"]
    argv = [sys.executable, "-m", "sidecar", *common, *flags, *secrets]
    done = subprocess.run(
        argv, cwd=cwd, env={**OUTSIDE, **(env or {})}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    app.assert_no_value(done.stdout, done.stderr)
    return done.returncode, done.stderr


def shown(app: App, text: str) -> str:
    """Output as the transcript shows it: no timings, ports, random names or paths."""
    text = text.replace(app.store.address, "$BAO_ADDR").replace(app.name, "app")
    text = re.sub(r'"ts": [0-9.]+', '"ts": ...', text)
    text = re.sub(r'"seconds": [0-9.]+', '"seconds": ...', text)
    return re.sub(r"/[^\s\"]*/(latchkey-(?:secrets|state))", r"./\1", text)


@pytest.fixture
def laptop(app: App, tmp_path: Path) -> Path:
    """A working directory with the store's CA, as a user would have it."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "ca.crt").write_bytes(app.store.ca_file.read_bytes())
    return cwd


def _store_token(store: OpenBao, policy: str) -> str:
    created = store.api("POST", "auth/token/create", {"policies": [policy], "ttl": "10m"})
    return str(created["auth"]["client_token"])


def _written(app: App, cwd: Path) -> None:
    files = cwd / "latchkey-secrets"
    assert json.loads((files / "db.json").read_text())["password"] == app.values["password"]
    assert (files / "password").read_text() == app.values["password"]
    assert (cwd / "latchkey-state" / "ready").exists()


def test_each_login_of_the_standalone_agent(app: App, laptop: Path) -> None:
    transcript: list[str] = []

    def step(title: str, command: str, code: int, stderr: str) -> None:
        transcript.extend([f"# {title}", f"$ {command}", shown(app, stderr).rstrip(), ""])
        transcript.append(f"(exit {code})\n")

    # 1. A service-account token, as `kubectl create token` prints it.
    (laptop / "token").write_text(app.token_path.read_text())
    code, err = run(app, laptop, "--role", app.role, "--audience", "openbao",
                    "--token-path", "token")  # fmt: skip
    assert code == 0, err
    _written(app, laptop)
    step(
        "a service-account token from kubectl (jwt auth, the pod's own way in)",
        "kubectl create token app -n team --audience openbao --duration 1h > token\n"
        "$ latchkey-sidecar --once --address $BAO_ADDR --ca-file ca.crt --role app "
        "--audience openbao --token-path token --secret db.json=secret/data/app/db "
        "--secret password=secret/data/app/db#password",
        code, err,
    )  # fmt: skip

    # 2. A store token in the environment: checked, used, never logged nor revoked.
    token = _store_token(app.store, app.name)
    code, err = run(app, laptop, "--auth-method", "token", env={"BAO_TOKEN": token})
    assert code == 0, err
    assert token not in err
    _written(app, laptop)
    assert app.store.api("POST", "auth/token/lookup", {"token": token})["data"]["ttl"] > 0
    step(
        "a store token from $BAO_TOKEN (or $VAULT_TOKEN): token auth",
        "BAO_TOKEN=$(bao token create -policy=app -ttl=10m -field=token) \\\n"
        "  latchkey-sidecar --once --address $BAO_ADDR --ca-file ca.crt --auth-method token "
        "--secret db.json=secret/data/app/db --secret password=secret/data/app/db#password",
        code, err,
    )  # fmt: skip

    # 3. The same from a file, as a CI secret is often mounted.
    (laptop / "bao-token").write_text(token + "\n")
    code, err = run(app, laptop, "--auth-method", "token", "--store-token-file", "bao-token")
    assert code == 0, err
    step(
        "a store token from a file: token auth",
        "latchkey-sidecar --once --address $BAO_ADDR --ca-file ca.crt --auth-method token "
        "--store-token-file bao-token --secret db.json=secret/data/app/db "
        "--secret password=secret/data/app/db#password",
        code, err,
    )  # fmt: skip

    # 4. What a newcomer first meets, in a fresh directory (no login saved there by the
    # runs above): no token at all, then a refused one.
    fresh = laptop / "fresh"
    fresh.mkdir()
    (fresh / "ca.crt").write_bytes(app.store.ca_file.read_bytes())
    code, err = run(app, fresh, "--role", app.role, "--audience", "openbao")
    assert code == 3
    assert "kubectl create token SA -n NAMESPACE --audience AUDIENCE" in err
    step(
        "no token given: the error says where one comes from",
        "latchkey-sidecar --once --address $BAO_ADDR --ca-file ca.crt --role app "
        "--audience openbao --secret db.json=secret/data/app/db "
        "--secret password=secret/data/app/db#password",
        code, err,
    )  # fmt: skip
    code, err = run(app, fresh, "--auth-method", "token", env={"BAO_TOKEN": "hvs.not-a-token"})
    assert code != 0
    assert "refused the store token from $BAO_TOKEN" in err
    assert "hvs.not-a-token" not in err
    step(
        "a store token the store refuses (the token itself is never printed)",
        "BAO_TOKEN=hvs.not-a-token latchkey-sidecar --once --address $BAO_ADDR "
        "--ca-file ca.crt --auth-method token --secret db.json=secret/data/app/db "
        "--secret password=secret/data/app/db#password",
        code, err,
    )  # fmt: skip

    ran = "\n".join(transcript)
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if UPDATE:
        DOC.write_text(f"{head}{BEGIN}\n```\n{ran}```\n{END}{tail}", encoding="utf-8")
    recorded = rest.partition(END)[0].strip().removeprefix("```").removesuffix("```").strip()
    assert recorded == ran.strip(), "docs/standalone.md differs: LATCHKEY_UPDATE_GOLDEN=1"


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        pytest.param({"method": "jwt"}, "auth.audience is required for the jwt method", id="jwt"),
        pytest.param({"method": "jwt", "audience": "a", "tokenFile": "t"},
                     "auth.tokenFile is for the token method only", id="token-file-with-jwt"),
    ],
)  # fmt: skip
def test_the_contract_says_what_each_method_needs(auth: dict[str, str], message: str) -> None:
    from sidecar.config import AgentConfig, ContractError, parse

    store = {"kind": "vault", "address": "https://bao:8200", "auth": auth}
    with pytest.raises(ContractError, match=f"^store.auth: {message}$"):
        parse(AgentConfig, {"store": store, "role": "app"})


def test_the_webhook_refuses_token_auth_for_pods() -> None:
    from pydantic import ValidationError

    from webhook.settings import WebhookConfig

    store = {"kind": "vault", "address": "https://bao:8200", "auth": {"method": "token"}}
    with pytest.raises(ValidationError, match="token is for the standalone agent only"):
        WebhookConfig.model_validate({"stores": {"default": store}})
