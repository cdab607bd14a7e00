"""The projected service-account token: read fresh from its file, rotation noticed.

The kubelet rewrites the token at about 80% of its life (an atomic symlink
swap), so the agent never caches it beyond one login: every login reads the
file again, and :meth:`TokenFile.rotated` tells the agent that a new login is
due. Only a digest of the last token is kept, never the token itself.
Its claims (issuer, subject, audience) are read, unverified, only to name them in
a cloud's denial.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecar.errors import TokenError

# Off a cluster no kubelet writes the projected token: say where one comes from.
OFF_CLUSTER = (
    "; off a cluster, give --token-path FILE with a token from "
    "`kubectl create token SA -n NAMESPACE --audience AUDIENCE --duration 1h`, "
    "or log in with a store token: --auth-method token and $BAO_TOKEN or $VAULT_TOKEN"
)
TOKEN_ENV = ("BAO_TOKEN", "VAULT_TOKEN")


class TokenFile:
    """One projected token file; knows whether it changed since the last login."""

    def __init__(
        self, path: str | Path, *, what: str = "projected token file", hint: str = OFF_CLUSTER
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.hint = hint  # said when the file is missing
        self._digest: bytes | None = None

    def _read(self) -> str:
        try:
            token = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError as exc:
            raise TokenError(f"{self.what} {self.path} does not exist{self.hint}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise TokenError(f"{self.what} {self.path} is unreadable: {reason}") from exc
        if not token:
            raise TokenError(f"{self.what} {self.path} is empty")
        return token

    def read(self) -> str:
        """The token for a login now; remembered (as a digest) for :meth:`rotated`."""
        token = self._read()
        self._digest = hashlib.sha256(token.encode()).digest()
        return token

    def remember(self) -> None:
        """Take the file's token as the one logged in with: a login adopted from an
        earlier run of the agent is as good as one made with the token there now."""
        with contextlib.suppress(TokenError):
            self.read()

    def forget(self) -> None:
        """Count the file's token as not logged in with, so :meth:`rotated` says so
        again: a login with it failed, and the next pass must try it again."""
        self._digest = None

    def rotated(self) -> bool:
        """True when the file holds another token than the one last logged in with.

        An unreadable file counts as not rotated: the current login stays good
        until it expires, and the next login reports the file's problem.
        """
        try:
            token = self._read()
        except TokenError:
            return False
        return hashlib.sha256(token.encode()).digest() != self._digest


class EnvToken:
    """A store token given in the environment (token auth of the standalone agent).

    Same interface as :class:`TokenFile`; it never rotates. Read once, at start, so a
    later change of the environment means nothing.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        name = next((n for n in TOKEN_ENV if environ.get(n, "").strip()), None)
        if name is None:
            raise TokenError(
                "token auth needs a store token: set $BAO_TOKEN or $VAULT_TOKEN, "
                "or give --store-token-file FILE"
            )
        self.path = Path(f"${name}")
        self._token = environ[name].strip()

    def read(self) -> str:
        return self._token

    def remember(self) -> None:
        """Nothing to remember: the token never changes."""

    def forget(self) -> None:
        """Nothing to forget: the token never changes."""

    def rotated(self) -> bool:
        return False


def token_claims(token: str) -> dict[str, Any]:
    """The projected token's claims, unverified, to name its issuer, subject and audience
    in a denial (they are not secret; the signature is not shown). Empty when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def identity(token: str) -> str:
    """``issuer I, subject S, audience A`` of a projected token, for denials."""
    claims = token_claims(token)
    aud = claims.get("aud")
    audience = ", ".join(aud) if isinstance(aud, list) else aud
    return (
        f"issuer {claims.get('iss', '?')}, subject {claims.get('sub', '?')}, "
        f"audience {audience or '?'}"
    )
