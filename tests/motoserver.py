"""A real moto server on loopback that enforces IAM, for the aws store's tests and bench.

Run as a script it *is* the server: moto's own ``moto_server`` with one patch.
Moto signs nothing for ``AssumeRoleWithWebIdentity`` (AWS's only unsigned STS
call) and, with IAM enforced, answers it with a 500. The patch lets the call
through after the checks STS makes: the role exists, its trust policy allows
``sts:AssumeRoleWithWebIdentity`` for an OIDC provider registered in IAM whose URL
is the token's ``iss`` and whose client IDs hold its ``aud``, and the token has
not expired. The token's signature is not checked (moto cannot fetch a JWKS).

Imported, it is :class:`MotoServer`, which starts that script on a free port,
waits for it, creates an admin user whose keys seed the data, and then turns
IAM enforcement on, so every later call is checked against the caller's policies.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


class MotoServer:
    """``moto_server`` in a subprocess with IAM enforced; seeded through admin keys."""

    def __init__(self, workdir: Path) -> None:
        from hack.localstore import free_port  # here: the server script cannot import hack

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_file = workdir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._admin_keys: dict[str, str] = {}
        self._clients: dict[str, Any] = {}

    def start(self, timeout: float = 30.0) -> None:
        # -P: the script's own directory (tests/) must not shadow modules moto imports.
        cmd = [sys.executable, "-P", str(Path(__file__)), "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        from hack.procs import wait_ready  # here: this file also runs as the server script

        wait_ready(
            self.process, self._answers, what="moto", log_file=self.log_file, timeout=timeout
        )
        self._bootstrap()

    def _answers(self) -> bool:
        return httpx.get(f"{self.endpoint}/moto-api/data.json").status_code == 200

    def _bootstrap(self) -> None:
        """An admin user for seeding, made while moto still lets anyone in; then enforce."""
        iam = self._new_client(
            "iam", {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "x"}
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(
            UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ALLOW_ALL)
        )
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self._admin_keys = {
            "aws_access_key_id": key["AccessKeyId"],
            "aws_secret_access_key": key["SecretAccessKey"],
        }
        self._clients.clear()
        self.set_auth(enforce=True)

    def set_auth(self, *, enforce: bool) -> None:
        """Moto checks signatures and IAM policies on every request when ``enforce``."""
        response = httpx.post(
            f"{self.endpoint}/moto-api/reset-auth",
            content=b"0" if enforce else b"inf",
            headers={"Content-Type": "text/plain"},
        )
        response.raise_for_status()

    def stop(self) -> None:
        from hack.procs import terminate  # here: this file also runs as the server script

        terminate(self.process)
        self.process = None

    def _new_client(self, service: str, keys: dict[str, str]) -> Any:
        import botocore.session

        session = botocore.session.Session()
        return session.create_client(
            service, region_name=REGION, endpoint_url=self.endpoint, **keys
        )

    def client(self, service: str) -> Any:
        """An admin botocore client, for seeding and rotating what the tests read."""
        if service not in self._clients:
            self._clients[service] = self._new_client(service, self._admin_keys)
        return self._clients[service]

    # --- setup helpers: what an AWS admin does once ---------------------------------------

    def add_oidc_provider(self, issuer_url: str, *, audience: str = "sts.amazonaws.com") -> str:
        """Trust a cluster's token issuer, as ``eksctl utils associate-iam-oidc-provider`` does."""
        iam = self.client("iam")
        for arn in (
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ):
            if arn.endswith("/" + issuer_url.removeprefix("https://")):
                iam.add_client_id_to_open_id_connect_provider(
                    OpenIDConnectProviderArn=arn, ClientID=audience
                )
                return str(arn)
        created = iam.create_open_id_connect_provider(
            Url=issuer_url, ClientIDList=[audience], ThumbprintList=["0" * 40]
        )
        return str(created["OpenIDConnectProviderArn"])

    def add_role(self, name: str, *, provider_arn: str, actions: list[str]) -> str:
        """A role that pods of that issuer may assume, allowed ``actions`` on every resource."""
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                }
            ],
        }
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
            "Arn"
        ]
        if actions:
            policy = {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
            }
            iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps(policy))
        return str(arn)

    def logins(self, role_arn: str) -> int:
        """How many times STS handed out credentials for ``role_arn``: seen from the server."""
        data = httpx.get(f"{self.endpoint}/moto-api/data.json").json()
        return sum(1 for r in data["sts"]["AssumedRole"] if r.get("role_arn") == role_arn)


# --- the server process ---------------------------------------------------------------


def _claims(token: str) -> dict[str, Any]:
    """The JWT's payload, or InvalidIdentityToken as STS answers for a malformed token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise _sts_error(400, "InvalidIdentityToken", "Token is not a valid JWT") from exc
    if not isinstance(claims, dict):
        raise _sts_error(400, "InvalidIdentityToken", "Token is not a valid JWT")
    return claims


def _sts_error(status: int, code: str, message: str) -> Exception:
    from moto.core.exceptions import _RESTError

    error = _RESTError(code, message)
    error.code = status
    return error


def _trusted(statement: dict[str, Any], claims: dict[str, Any], iam: Any) -> bool:
    from moto.iam.exceptions import NotFoundException

    actions = statement.get("Action", [])
    actions = [actions] if isinstance(actions, str) else actions
    federated = statement.get("Principal", {}).get("Federated")
    if statement.get("Effect") != "Allow" or "sts:AssumeRoleWithWebIdentity" not in actions:
        return False
    try:
        provider = iam.get_open_id_connect_provider(federated)
    except NotFoundException:
        return False
    audiences = claims.get("aud", [])
    audiences = [audiences] if isinstance(audiences, str) else audiences
    issuer_ok = claims.get("iss") == f"https://{provider.url}"
    return issuer_ok and any(aud in provider.client_id_list for aud in audiences)


def _check_web_identity(role_arn: str, token: str) -> None:
    """The checks STS makes before it hands out web-identity credentials (bar the signature)."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    iam = iam_backends[ACCOUNT_ID]["aws"]
    claims = _claims(token)
    denied = _sts_error(
        403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    )
    try:
        role = iam.get_role_by_arn(role_arn)
    except NotFoundException as exc:
        raise denied from exc
    statements = json.loads(role.assume_role_policy_document).get("Statement", [])
    if not any(_trusted(s, claims, iam) for s in statements):
        raise denied
    if float(claims.get("exp", 0)) < time.time():
        raise _sts_error(
            400,
            "ExpiredTokenException",
            "Token expired: current date/time must be before the expiration date/time",
        )


def _serve(argv: list[str]) -> None:
    """``moto_server`` with unsigned AssumeRoleWithWebIdentity checked as STS does."""
    from moto.core.exceptions import _RESTError
    from moto.core.responses import ActionAuthenticatorMixin  # type: ignore[attr-defined]
    from moto.server import main

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        unsigned = "Authorization" not in self.headers
        if unsigned and self._get_action() == "AssumeRoleWithWebIdentity":
            _check_web_identity(self._get_param("RoleArn"), self._get_param("WebIdentityToken"))
            return
        try:
            original(self, iam_request_cls, resource)
        except _RESTError as exc:
            if "X-Amz-Target" not in self.headers:
                raise
            raise exc.to_json() from None  # JSON services answer denials in JSON, as AWS does

    ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate  # type: ignore[method-assign]
    main(argv)


if __name__ == "__main__":
    _serve(sys.argv[1:])
