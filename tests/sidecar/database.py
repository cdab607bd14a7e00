"""A throwaway PostgreSQL and OpenBao's database engine over it: the leased, renewable
secrets the agent's lease tests read."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hack.localstore import OpenBao, free_port
from tests.sidecar.agent_helpers import App


def _postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries; installed on first use where apt can."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found:
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True)
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    assert found, "PostgreSQL is needed for the leased-secret tests (apt-get install postgresql)"
    return found[-1].parent


class Postgres:
    """A throwaway PostgreSQL on loopback: the real thing OpenBao's database engine leases from."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        # Not under pytest's tmp: that is root's 0700 tree, and postgres refuses to run as root.
        self.workdir = Path(tempfile.mkdtemp(prefix="latchkey-pg-"))
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *argv: str) -> None:
        # Output to a file, not a pipe: the server pg_ctl starts would hold a pipe open.
        log = self.workdir / "commands.log"
        with log.open("a") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, user=self.user, group=self.user
            )
        assert done.returncode == 0, f"{argv[0]} failed: {log.read_text()}"

    def start(self) -> None:
        if self.user:
            shutil.chown(self.workdir, self.user, self.user)
        data = str(self.workdir / "data")
        self._run(str(self.bin / "initdb"), "-D", data, "-A", "trust", "-U", "postgres")
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        server_log = str(self.workdir / "server.log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", data, "-o", options, "-l", server_log, "-w", "start"
        )

    def stop(self) -> None:
        data = str(self.workdir / "data")
        self._run(str(self.bin / "pg_ctl"), "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def url(self) -> str:
        return f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{self.port}/postgres"


def enable_database(store: OpenBao, db: Postgres, *, role: str, ttl: str, max_ttl: str) -> str:
    """OpenBao's database engine over ``db`` with one role; returns its creds path."""
    if "database/" not in store.api("GET", "sys/mounts")["data"]:
        store.api("POST", "sys/mounts/database", {"type": "database"})
    store.api(
        "POST",
        f"database/config/{role}",
        {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": db.url() + "?sslmode=disable",
            "username": "postgres",
            "password": "unused-with-trust",
            "allowed_roles": [role],
        },
    )
    store.api(
        "POST",
        f"database/roles/{role}",
        {
            "db_name": role,
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' "
                "VALID UNTIL '{{expiration}}';"
            ],
            "default_ttl": ttl,
            "max_ttl": max_ttl,
        },
    )
    return f"database/creds/{role}"


def grant_database(app: App, db: Postgres, *, ttl: str, max_ttl: str) -> str:
    """Database creds over ``db`` that ``app``'s role may read too; returns their path."""
    path = enable_database(app.store, db, role=f"db-{app.name}", ttl=ttl, max_ttl=max_ttl)
    app.store.write_policy(f"{app.name}-db", f'path "{path}" {{ capabilities = ["read"] }}')
    app.store.api(
        "POST",
        f"auth/jwt/role/{app.role}",
        {"role_type": "jwt", "token_policies": [app.name, f"{app.name}-db"]},
    )
    return path
