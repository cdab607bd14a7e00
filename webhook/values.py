"""Parsers for single annotation values: text in, typed value out, ValueError otherwise.

Each ValueError's message says what is valid; the caller adds the annotation key.
Nothing here looks at the pod or at other annotations: cross-checks live in
:mod:`webhook.annotations` and :mod:`webhook.targets`.
"""

from __future__ import annotations

import re
import string
from pathlib import PurePosixPath

from sidecar.config import (
    BIN_DIR,
    GCP_SERVICE_ACCOUNT_RE,
    GUID_RE,
    MAX_REFRESH_SECONDS,
    MIN_REFRESH_SECONDS,
    STATE_DIR,
    TOKEN_DIR,
    AnyStore,
    AwsStore,
    AzureStore,
    GcpStore,
    HttpAction,
    SignalAction,
    parse_duration,
)
from sidecar.errors import ConfigError
from sidecar.paths import aws, azure, gcp
from webhook.problems import echo

# Signals a process can catch on Linux; KILL and STOP cannot be, so they are refused.
SIGNALS = frozenset(
    ("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "USR1", "SEGV", "USR2", "PIPE",
     "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ",
     "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS")
)  # fmt: skip
QUANTITY_RE = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
HTTP_ACTION_RE = re.compile(r"^http://(localhost|127\.0\.0\.1):(\d{1,5})(/\S*)?$")
CONTAINER_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
FILE_MODE_RE = re.compile(r"^0?[0-7]{3}$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
# What str.isspace() calls white space, found in one C scan instead of a call per character.
SPACE_RE = re.compile(r"\s")
BAD_SEGMENTS = frozenset({"", ".", ".."})  # of a store path
# Our own directories; a mount-path there would shadow the agent's.
RESERVED_DIRS = (TOKEN_DIR.parent, STATE_DIR.parent, BIN_DIR.parent)


def boolean(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError(f'{echo(value)} is not a boolean: use "true" or "false"')
    return value == "true"


def refresh(value: str) -> int:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"{echo(value)} is not a duration such as 30s, 5m or 1h") from None
    if not MIN_REFRESH_SECONDS <= seconds <= MAX_REFRESH_SECONDS:
        raise ValueError(f"{echo(value)} is outside 1s to 24h")
    return seconds


def quantity(value: str) -> str:
    if not QUANTITY_RE.fullmatch(value):
        raise ValueError(f"{echo(value)} is not a Kubernetes quantity such as 50m, 64Mi or 1")
    return value


def file_mode(value: str) -> int:
    if not FILE_MODE_RE.fullmatch(value):
        raise ValueError(f"{echo(value)} is not an octal file mode such as 0400 or 0440")
    return int(value, 8)


def template(value: str) -> str:
    if not value or not string.Template(value).is_valid():
        raise ValueError(
            f"{echo(value)} is not a valid template: use ${{field}} for a secret's field "
            "and $$ for a literal $"
        )
    return value


def mount_path(value: str) -> str:
    path = PurePosixPath(value)
    normal = value.startswith("/") and str(path) == value and ".." not in path.parts
    if not normal or value == "/" or ":" in value:
        raise ValueError(
            f"{echo(value)} is not a usable mount path: an absolute, normalised directory "
            "other than / with no ':', such as /latchkey/secrets"
        )
    if any(_overlaps(path, PurePosixPath(d)) for d in RESERVED_DIRS):
        raise ValueError(f"{echo(value)} overlaps a directory latchkey uses; pick another")
    return value


def _overlaps(one: PurePosixPath, other: PurePosixPath) -> bool:
    return one == other or one.is_relative_to(other) or other.is_relative_to(one)


def container_names(value: str) -> tuple[str, ...]:
    names = [name.strip() for name in value.split(",")]
    bad = [name for name in names if not CONTAINER_NAME_RE.fullmatch(name)]
    if bad:
        raise ValueError(
            f"{echo(bad[0])} is not a container name; use a comma list such as app,worker"
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{echo(', '.join(duplicates))} named more than once")
    return tuple(names)


def role(value: str, *, store: AnyStore | None) -> str:
    """A store role: Vault's role name, an IAM role ARN (aws), a service account's email
    to impersonate (gcp) or an application's client id (azure)."""
    kind = store.kind if store is not None else "vault"
    if kind == "aws" and not ROLE_ARN_RE.fullmatch(value):
        raise ValueError(
            f"{echo(value)} is not an IAM role ARN such as arn:aws:iam::123456789012:role/app"
        )
    if kind == "gcp" and not re.fullmatch(GCP_SERVICE_ACCOUNT_RE, value):
        raise ValueError(
            f"{echo(value)} is not a service account email such as "
            "app@my-project.iam.gserviceaccount.com (the one to impersonate)"
        )
    if kind == "azure" and not re.fullmatch(GUID_RE, value):
        raise ValueError(
            f"{echo(value)} is not a client id (a GUID such as "
            "11111111-2222-3333-4444-555555555555) of an app registration or managed identity"
        )
    if not value or len(value) > 512 or any(c.isspace() for c in value):
        raise ValueError(f"{echo(value)} is not a role name: non-empty, no spaces")
    return value


def store_path(value: str, *, store: AnyStore | None, key_required: bool) -> tuple[str, str | None]:
    """Split ``path#key`` on the last ``#`` and check the path suits the store's kind
    (``store`` None: an unknown store, reported on its own; checked as Vault's)."""
    path, hash_, key = value.rpartition("#") if "#" in value else (value, "", "")
    if key_required and not key:
        raise ValueError(f"{echo(value)} has no field: use path#key")
    if hash_ and (not key or key != key.strip() or not key.isprintable()):
        raise ValueError(f"{echo(value)} has an empty or unprintable field after '#'")
    if store is not None and store.kind != "vault":
        _cloud_path(path, store)
    elif not _vault_path(path):
        raise ValueError(
            f"{echo(path)} is not a store path such as secret/data/app/db "
            "(no leading or trailing '/', no empty or '..' segments, no spaces)"
        )
    return path, key or None


def _cloud_path(path: str, store: AwsStore | GcpStore | AzureStore) -> None:
    """The agent's own parser decides, so admission and the agent agree on every path."""
    try:
        if isinstance(store, AwsStore):
            aws.parse_path(path)
        elif isinstance(store, GcpStore):
            gcp.parse_path(path, project=store.project)
        else:
            azure.parse_path(path)
    except ConfigError as exc:
        quoted = f" path {echo(path)} is not valid"
        raise ValueError(str(exc).replace(f" path {path!r} is not valid", quoted)) from None


def _vault_path(path: str) -> bool:
    segments = path.split("/")
    return (
        bool(path)
        and path.isprintable()
        and SPACE_RE.search(path) is None
        and BAD_SEGMENTS.isdisjoint(segments)
    )


def on_change(value: str) -> tuple[SignalAction | HttpAction, ...]:
    """A comma list of ``signal:<SIG>:<container>`` and ``http://localhost:<port>/<path>``."""
    return tuple(_action(item.strip()) for item in value.split(","))


def _action(item: str) -> SignalAction | HttpAction:
    if item.startswith("signal:"):
        _, sig, container = [*item.split(":", 2), "", ""][:3]
        name = sig.upper().removeprefix("SIG")
        if name not in SIGNALS:
            raise ValueError(
                f"{echo(sig)} is not a signal a process can catch, such as HUP, USR1 or TERM"
            )
        if not CONTAINER_NAME_RE.fullmatch(container):
            raise ValueError(f"{echo(item)} names no container: use signal:HUP:<container>")
        return SignalAction(signal=f"SIG{name}", container=container)
    match = HTTP_ACTION_RE.fullmatch(item)
    if match and 1 <= int(match.group(2)) <= 65535:
        return HttpAction(url=item)
    raise ValueError(
        f"{echo(item)} is not an action: use signal:HUP:<container> "
        "or http://localhost:<port>/<path>"
    )
