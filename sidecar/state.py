"""What the agent remembers across its own restarts, in ``stateDir``: its store token
and the leases it holds, so a crash loop neither piles up tokens nor reads a
dynamic secret twice (classic mode: the init step's leases go to the sidecar).

``stateDir`` is a memory volume mounted only into the latchkey containers. Files
are JSON, written atomically with mode 0600. ``token.json`` holds the store token
itself (the one credential the agent has to keep, as it keeps it in memory);
``leases.json`` holds lease ids, paths and expiry times, never secret values.

In memory the agent times everything on its monotonic clock, so neither its own
wall clock jumping nor the store's clock being off moves a renewal; only on
disk are times wall-clock epoch seconds, converted at save and load. A state
file that is missing, unreadable or garbled is simply not used: the agent then
logs in and reads as on a first start. Failing to save is a warning, not an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from sidecar.errors import WriteError
from sidecar.logs import Log
from sidecar.stores.base import Lease
from sidecar.writer import write_atomic

TOKEN_FILE = "token.json"  # noqa: S105 - a file name
LEASES_FILE = "leases.json"
MODE = 0o600


def to_wall(monotonic: float) -> float:
    """A monotonic instant as epoch seconds, for a file the next process reads."""
    return time.time() + (monotonic - time.monotonic())


def to_monotonic(wall: float) -> float:
    """Epoch seconds from a file as an instant on this process's monotonic clock."""
    return time.monotonic() + (wall - time.time())


class SavedToken(msgspec.Struct, frozen=True):
    """A store token an earlier run of this agent logged in for."""

    token: str
    accessor: str
    owner: str  # store address, namespace, auth mount and role: adopt only the same
    expires_at: float  # monotonic


class StateDir:
    """Reads and writes the agent's state files; never raises for their sake."""

    def __init__(self, path: str | Path, *, log: Log) -> None:
        self.path = Path(path)
        self.log = log

    def load(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.path / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.log.warning("state file not usable; ignoring it", file=name, error=repr(exc))
            return None
        return data if isinstance(data, dict) else None

    def save(self, name: str, data: Mapping[str, Any]) -> None:
        content = json.dumps(data, sort_keys=True).encode()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path / name, content, mode=MODE)
        except (OSError, WriteError) as exc:
            self.log.warning("state file not saved", file=name, error=str(exc))

    def remove(self, name: str) -> None:
        try:
            (self.path / name).unlink(missing_ok=True)
        except OSError as exc:
            self.log.warning("state file not removed", file=name, error=exc.strerror)

    def forget(self) -> None:
        """After a revocation: the token is dead, and every lease under it."""
        self.remove(TOKEN_FILE)
        self.remove(LEASES_FILE)

    # --- the store token ---------------------------------------------------------------

    def save_token(self, token: SavedToken) -> None:
        self.save(
            TOKEN_FILE,
            {
                "token": token.token,
                "accessor": token.accessor,
                "owner": token.owner,
                "expiresAt": to_wall(token.expires_at),
            },
        )

    def load_token(self, owner: str) -> SavedToken | None:
        """The saved token when it was issued to ``owner`` and has not expired."""
        data = self.load(TOKEN_FILE)
        try:
            saved = SavedToken(
                token=str(data["token"]),
                accessor=str(data["accessor"]),
                owner=str(data["owner"]),
                expires_at=to_monotonic(float(data["expiresAt"])),
            ) if data else None  # fmt: skip
        except (KeyError, TypeError, ValueError):
            self.log.warning("state file not usable; ignoring it", file=TOKEN_FILE)
            return None
        if saved is None or saved.owner != owner or saved.expires_at <= time.monotonic():
            return None
        return saved

    # --- leases ------------------------------------------------------------------------

    def save_leases(self, accessor: str | None, leases: Mapping[str, Lease]) -> None:
        """The leases held under the token ``accessor``: they live and die with it."""
        if accessor is None:
            return
        records = {
            path: {
                "leaseId": lease.lease_id,
                "duration": lease.duration,
                "renewable": lease.renewable,
                "expiresAt": to_wall(lease.expires_at),
            }
            for path, lease in leases.items()
        }
        self.save(LEASES_FILE, {"accessor": accessor, "leases": records})

    def load_leases(self, accessor: str | None) -> dict[str, Lease]:
        """Leases saved under the token ``accessor`` that have not expired yet."""
        data = self.load(LEASES_FILE)
        if accessor is None or not data or data.get("accessor") != accessor:
            return {}
        leases = {}
        try:
            for path, record in dict(data["leases"]).items():
                lease = Lease(
                    str(record["leaseId"]),
                    float(record["duration"]),
                    bool(record["renewable"]),
                    to_monotonic(float(record["expiresAt"])),
                )
                if lease.expires_at > time.monotonic():
                    leases[str(path)] = lease
        except (KeyError, TypeError, ValueError, AttributeError):
            self.log.warning("state file not usable; ignoring it", file=LEASES_FILE)
            return {}
        return leases
