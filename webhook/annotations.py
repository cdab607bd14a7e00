"""Strict parse of a pod's ``latchkey.dev/`` annotations into one frozen request.

Every key under the prefix is known here; anything else is a problem, with the
closest valid key suggested. Checks that need the pod's containers or security
context live in :mod:`webhook.targets`. All problems are collected, then the pod
is denied once with every one of them.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Literal, TypeVar, cast, get_args

import msgspec

from sidecar.config import (
    ENV_NAME_RE,
    AnyStore,
    Format,
    HttpAction,
    SignalAction,
    is_file_name,
)
from webhook import values
from webhook.problems import PREFIX, Problems, echo
from webhook.settings import WebhookConfig

T = TypeVar("T")
INJECT_KEY = PREFIX + "inject"
STATUS_KEY = PREFIX + "status"
PLAIN = (
    "inject", "store", "role", "containers", "mount-path", "init-only", "refresh",
    "on-change", "agent-cpu", "agent-memory", "status",
)  # fmt: skip
PER_FILE = ("format-", "template-", "file-mode-")
PER_NAME = ("secret-", "env-", "source-", "jinja-", "cert-", *PER_FILE)
# What a certificate's cert-params-<name> may set (Vault/OpenBao pki/issue parameters).
CERT_PARAMS = frozenset(
    {"common_name", "alt_names", "ip_sans", "uri_sans", "other_sans", "ttl",
     "exclude_cn_from_sans"}
)  # fmt: skip
CERT_TTL = re.compile(r"[1-9][0-9]*[smhd]?")
FORMATS: tuple[str, ...] = get_args(Format)
# A per-name key split in one match: ``secret-db`` is ``db`` under ``secret-``.
PER_NAME_RE = re.compile(f"({'|'.join(map(re.escape, PER_NAME))})(.*)", re.DOTALL)

Optin = Literal["not-requested", "opted-out", "stray", "already-injected", "requested"]


class FileRequest(msgspec.Struct, frozen=True):
    """One ``secret-<name>`` with its ``format-``/``template-``/``file-mode-`` companions."""

    name: str
    path: str
    key: str | None
    format: Format | None = None
    template: str | None = None
    mode: int | None = None


class SourceRequest(msgspec.Struct, frozen=True):
    """One ``source-<name>``: a secret for ``jinja-`` templates only, no file."""

    name: str
    path: str
    key: str | None


class RenderRequest(msgspec.Struct, frozen=True):
    """One ``jinja-<name>``: a file rendered from the secrets its template names."""

    name: str
    template: str
    uses: tuple[str, ...]
    mode: int | None = None


class CertRequest(msgspec.Struct, frozen=True):
    """One ``cert-<name>``: a certificate issued by a store write, with its parameters."""

    name: str
    path: str
    params: tuple[tuple[str, str], ...]
    mode: int | None = None


class EnvRequest(msgspec.Struct, frozen=True):
    """One ``env-<VAR>``: a single field set as an environment variable of the app."""

    name: str
    path: str
    key: str


class InjectRequest(msgspec.Struct, frozen=True):
    """What an opted-in pod asked for, every value already checked on its own."""

    store: str
    role: str | None
    files: tuple[FileRequest, ...]
    env: tuple[EnvRequest, ...]
    containers: tuple[str, ...] | None
    mount_path: str
    init_only: bool
    refresh_seconds: int
    on_change: tuple[SignalAction | HttpAction, ...]
    agent_cpu: str | None
    agent_memory: str | None
    sources: tuple[SourceRequest, ...] = ()
    renders: tuple[RenderRequest, ...] = ()
    certificates: tuple[CertRequest, ...] = ()


def opt_in(annotations: Mapping[str, object]) -> Optin:
    """Whether the pod wants injection.

    The webhook is sent every pod with an annotation under ``latchkey.dev/`` (the
    matchConditions), so a bad ``inject`` value or a misspelt key is denied rather
    than starting the pod without its secrets: ``inject`` other than "false" is a
    request (parsed, so "True" is refused); no ``inject`` beside other keys of ours
    is ``stray`` (denied); ``inject: "false"`` is an explicit opt-out.
    """
    if STATUS_KEY in annotations:
        return "already-injected"
    if INJECT_KEY not in annotations:
        ours = any(isinstance(k, str) and k.startswith(PREFIX) for k in annotations)
        return "stray" if ours else "not-requested"
    if annotations[INJECT_KEY] == "false":
        return "opted-out"
    return "requested"


def stray(annotations: Mapping[str, object], problems: Problems) -> None:
    """Problems of a pod with annotations of ours but no ``inject``: each unknown key by
    name (a misspelt ``injekt``), and the missing opt-in."""
    ours = _ours(annotations, problems)
    problems.add(
        "inject",
        f"missing: the pod has {PREFIX} annotations ({', '.join(sorted(ours)) or 'none valid'}) "
        f'but does not opt in; add {PREFIX}inject: "true", or remove them',
    )


def ignored_warning(annotations: Mapping[str, object]) -> str | None:
    """For ``inject: "false"``: the other annotations of ours do nothing; say so."""
    others = sorted(
        str(k).removeprefix(PREFIX)
        for k in annotations
        if str(k).startswith(PREFIX) and k != INJECT_KEY
    )
    if not others:
        return None
    return (
        f'latchkey: {PREFIX}inject is "false", so {", ".join(others)} '
        f"{'is' if len(others) == 1 else 'are'} ignored and the pod gets no secrets"
    )


def parse(
    annotations: Mapping[str, object], *, config: WebhookConfig, problems: Problems
) -> InjectRequest:
    """The pod's request; problems found are recorded, and defaults stand in for bad values."""
    ours = _ours(annotations, problems)
    named = _by_prefix(ours)
    get = _Getter(ours, problems)
    get("inject", values.boolean, default=True)
    store = ours.get("store", "default")
    if store not in config.stores:
        valid = ", ".join(sorted(config.stores))
        problems.add("store", f"no store named {echo(store)} in the webhook config; valid: {valid}")
    chosen = config.stores.get(store)
    request = InjectRequest(
        store=store,
        role=get("role", lambda v: values.role(v, store=chosen), default=None),
        files=_files(named, get, store=chosen, problems=problems),
        sources=_sources(named, get, store=chosen, problems=problems),
        renders=_renders(ours, named, get, problems=problems),
        certificates=_certificates(ours, named, get, store=chosen, problems=problems),
        env=_env(named, get, store=chosen, problems=problems),
        containers=get("containers", values.container_names, default=None),
        mount_path=get("mount-path", values.mount_path, default=config.defaults.mount_path),
        init_only=get("init-only", values.boolean, default=False),
        refresh_seconds=get(
            "refresh", values.refresh, default=_default_refresh(config.defaults.refresh)
        ),
        on_change=get("on-change", values.on_change, default=()),
        agent_cpu=get("agent-cpu", values.quantity, default=None),
        agent_memory=get("agent-memory", values.quantity, default=None),
    )
    _combinations(
        ours,
        named,
        request,
        problems,
        given={k.removeprefix(PREFIX) for k in annotations if str(k).startswith(PREFIX)},
    )
    return request


def _by_prefix(ours: Mapping[str, str]) -> dict[str, list[str]]:
    """The names under each per-name prefix, sorted (``{"secret-": ["db"], ...}``): found
    in one pass over our annotations, not in one for each prefix."""
    named: dict[str, list[str]] = {prefix: [] for prefix in PER_NAME}
    for key in sorted(ours):
        if match := PER_NAME_RE.match(key):
            named[match[1]].append(match[2])
    return named


@functools.lru_cache(maxsize=16)
def _default_refresh(text: str) -> int:
    """The admin config's ``defaults.refresh`` in seconds, parsed once, not per pod."""
    return values.refresh(text)


def _ours(annotations: Mapping[str, object], problems: Problems) -> dict[str, str]:
    """Our annotations by short name; unknown keys and non-string values are problems."""
    ours: dict[str, str] = {}
    for key, value in annotations.items():
        if not isinstance(key, str) or not key.startswith(PREFIX):
            continue
        name = key.removeprefix(PREFIX)
        if not isinstance(value, str):
            problems.add(name, _not_a_string(name, value))
        elif name in PLAIN or name.startswith(PER_NAME):
            ours[name] = value
        else:
            problems.add(name, _unknown(name))
    return ours


def _not_a_string(name: str, value: object) -> str:
    """Annotations are strings; YAML turns unquoted 0440, true or 30 into other types."""
    if name.startswith("file-mode-") and isinstance(value, int) and not isinstance(value, bool):
        mode = f"0{value:o}"
        return (
            f"is the number {value}: YAML read the unquoted {mode} as octal; "
            f'quote it: {PREFIX}{name}: "{mode}"'
        )
    if isinstance(value, bool | int | float):
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return (
            f"{echo(value)} is not a string; quote it in YAML: {PREFIX}{name}: {json.dumps(text)}"
        )
    return f"{echo(value)} is not a string; quote it in YAML"


def file_name_problem(name: str) -> str:
    """Why ``name`` is not a file name, pointing at the lower-case form when that is one."""
    hint = f"; names are lower case: {echo(name.lower())}" if is_file_name(name.lower()) else ""
    return f"{echo(name)} is not a file name: {_FILE_RULES}{hint}"


def _unknown(name: str) -> str:
    """Name the closest valid key, trying each known prefix on every tail of the name."""
    tails = [name[i + 1 :] for i, char in enumerate(name) if char == "-"]
    candidates = [*PLAIN, *(prefix + tail for prefix in PER_NAME for tail in tails if tail)]
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    if close:
        return f"unknown annotation; did you mean {PREFIX}{close[0]}?"
    valid = [
        *(k for k in PLAIN if k != "status"),
        *(f"{p}<{'VAR' if p == 'env-' else 'name'}>" for p in PER_NAME),
    ]
    return f"unknown annotation; valid keys under {PREFIX}: {', '.join(valid)}"


class _Getter:
    """Parse one annotation with a value parser, recording its ValueError as a problem."""

    def __init__(self, ours: Mapping[str, str], problems: Problems) -> None:
        self._ours, self._problems = ours, problems

    def __call__(self, name: str, parse: Callable[[str], T], *, default: T) -> T:
        if name not in self._ours:
            return default
        try:
            return parse(self._ours[name])
        except ValueError as exc:
            self._problems.add(name, str(exc))
            return default


def _file_names(named: Mapping[str, list[str]], prefix: str, problems: Problems) -> list[str]:
    """The names after ``prefix`` (``secret-``, ``source-``, ...) that are file names;
    each one that is not is a problem of its annotation."""
    names = []
    for name in named[prefix]:
        if prefix == "cert-" and name.startswith("params-"):
            continue  # cert-params-<name> goes with cert-<name>
        if is_file_name(name):
            names.append(name)
        else:
            problems.add(f"{prefix}{name}", file_name_problem(name))
    return names


def _files(
    named: Mapping[str, list[str]], get: _Getter, *, store: AnyStore | None, problems: Problems
) -> tuple[FileRequest, ...]:
    files = []
    for name in _file_names(named, "secret-", problems):
        ref = get(f"secret-{name}", _ref(store, key_required=False), default=None)
        if ref is None:
            continue
        files.append(
            FileRequest(
                name=name,
                path=ref[0],
                key=ref[1],
                format=get(f"format-{name}", _format, default=None),
                template=get(f"template-{name}", values.template, default=None),
                mode=get(f"file-mode-{name}", values.file_mode, default=None),
            )
        )
    return tuple(files)


def _sources(
    named: Mapping[str, list[str]], get: _Getter, *, store: AnyStore | None, problems: Problems
) -> tuple[SourceRequest, ...]:
    sources = []
    for name in _file_names(named, "source-", problems):
        ref = get(f"source-{name}", _ref(store, key_required=False), default=None)
        if ref is not None:
            sources.append(SourceRequest(name=name, path=ref[0], key=ref[1]))
    return tuple(sources)


def _renders(
    ours: Mapping[str, str], named: Mapping[str, list[str]], get: _Getter, *, problems: Problems
) -> tuple[RenderRequest, ...]:
    """``jinja-<name>`` files: the template parses, and names secrets only by constant."""
    renders = []
    names = _file_names(named, "jinja-", problems)
    if not names:
        return ()
    from sidecar.jinja import parse as parse_template
    from sidecar.jinja import secrets_used

    declared = {n.split("-", 1)[1] for n in ours if n.startswith(("secret-", "source-"))}
    for name in names:
        key = f"jinja-{name}"
        if f"secret-{name}" in ours:
            problems.add(key, f"{PREFIX}secret-{name} writes that file already; rename one")
            continue
        try:
            tree = parse_template(ours[key])
        except ValueError as exc:
            problems.add(key, f"the template does not parse: {exc}")
            continue
        used, wrong = secrets_used(tree)
        for problem in wrong:
            problems.add(key, problem)
        for missing in sorted(used - declared):
            problems.add(
                key,
                f"uses secrets.{missing}, which the pod does not declare: add {PREFIX}source-"
                f"{missing} (a secret for templates only) or {PREFIX}secret-{missing}",
            )
        if not used and not wrong:
            problems.add(key, "the template uses no secret: name one as secrets.NAME")
        mode = get(f"file-mode-{name}", values.file_mode, default=None)
        renders.append(
            RenderRequest(name=name, template=ours[key], uses=tuple(sorted(used)), mode=mode)
        )
    return tuple(renders)


def _certificates(
    ours: Mapping[str, str],
    named: Mapping[str, list[str]],
    get: _Getter,
    *,
    store: AnyStore | None,
    problems: Problems,
) -> tuple[CertRequest, ...]:
    certificates = []
    for name in _file_names(named, "cert-", problems):
        key = f"cert-{name}"
        if store is not None and store.kind != "vault":
            problems.add(
                key, f"{store.kind} stores issue no certificates: use a Vault/OpenBao store"
            )
            continue
        ref = get(key, _ref(store, key_required=False), default=None)
        no_params: dict[str, str] = {}
        params = get(f"cert-params-{name}", _cert_params, default=no_params)
        if ref is None:
            continue
        if ref[1] is not None:
            problems.add(key, "a certificate is the whole answer: drop the #field")
        certificates.append(
            CertRequest(
                name=name, path=ref[0], params=tuple(sorted(params.items())),
                mode=get(f"file-mode-{name}", values.file_mode, default=None),
            )
        )  # fmt: skip
    for name in (n.removeprefix("params-") for n in named["cert-"] if n.startswith("params-")):
        if f"cert-{name}" not in ours:
            problems.add(
                f"cert-params-{name}", f"there is no {PREFIX}cert-{name} for it to apply to"
            )
    return tuple(certificates)


def _cert_params(value: str) -> dict[str, str]:
    example = '{"common_name": "web.shop.svc", "alt_names": "web,web.shop", "ttl": "72h"}'
    try:
        params = json.loads(value)
    except ValueError:
        raise ValueError(f"is not a JSON object such as {example}") from None
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise ValueError(f"is not a JSON object of strings such as {example}")
    if unknown := sorted(set(params) - CERT_PARAMS):
        raise ValueError(f"unknown {', '.join(unknown)}; valid: {', '.join(sorted(CERT_PARAMS))}")
    if "ttl" in params and not CERT_TTL.fullmatch(params["ttl"]):
        raise ValueError(f"ttl {echo(params['ttl'])} is not a duration such as 30s, 72h or 30d")
    return params


_ENV_RULES = "letters, digits and '_', not starting with a digit"
_FILE_RULES = "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"


def _ref(store: AnyStore | None, *, key_required: bool) -> Callable[[str], tuple[str, str | None]]:
    return lambda value: values.store_path(value, store=store, key_required=key_required)


def _format(value: str) -> Format:
    if value in FORMATS:
        return cast(Format, value)
    raise ValueError(f"{echo(value)} is not a format; valid: {', '.join(FORMATS)}")


def _env(
    named: Mapping[str, list[str]], get: _Getter, *, store: AnyStore | None, problems: Problems
) -> tuple[EnvRequest, ...]:
    env = []
    for name in named["env-"]:
        if not ENV_NAME_RE.fullmatch(name):
            problems.add(f"env-{name}", f"{echo(name)} is not an env var name: {_ENV_RULES}")
            continue
        ref = get(f"env-{name}", _ref(store, key_required=True), default=None)
        if ref is not None and ref[1] is not None:
            env.append(EnvRequest(name=name, path=ref[0], key=ref[1]))
    return tuple(env)


def _combinations(
    ours: Mapping[str, str],
    named: Mapping[str, list[str]],
    request: InjectRequest,
    problems: Problems,
    *,
    given: set[str],
) -> None:
    """Problems that only show when annotations are read together; ``given`` has every key,
    even those whose value was unusable, so one bad value is not reported twice."""
    if any(named[prefix] for prefix in PER_FILE):
        _companions(named, problems, given=given)
    for file in request.files:
        if file.format == "raw" and file.key is None:
            problems.add(
                f"format-{file.name}", 'raw needs one field: write the secret as "path#key"'
            )
    if request.init_only and "on-change" in ours:
        problems.add("on-change", "cannot be used with init-only: no agent runs after the start")
    if request.init_only and "refresh" in ours:
        problems.add("refresh", "cannot be used with init-only: no agent runs after the start")
    asks = any(n.startswith(("secret-", "env-", "jinja-", "cert-")) for n in given)
    # A misspelt secret- key is reported as unknown; "asks for no secrets" would mislead.
    if not asks and all(n in PLAIN or n.startswith(PER_NAME) for n in given):
        problems.add(
            "inject", f"the pod asks for no secrets: add {PREFIX}secret-<name> or {PREFIX}env-<VAR>"
        )


def _companions(named: Mapping[str, list[str]], problems: Problems, *, given: set[str]) -> None:
    """A ``format-``, ``template-`` or ``file-mode-`` needs the file it applies to (a
    ``file-mode-`` may also be a rendered file's or a certificate's)."""
    secrets = {n.removeprefix("secret-") for n in given if n.startswith("secret-")}
    rendered = {n.removeprefix("jinja-") for n in given if n.startswith("jinja-")}
    for prefix in PER_FILE:
        for target in named[prefix]:
            if prefix == "file-mode-" and (target in rendered or f"cert-{target}" in given):
                continue
            if not is_file_name(target):
                problems.add(prefix + target, file_name_problem(target))
            elif target not in secrets:
                problems.add(
                    prefix + target, f"there is no {PREFIX}secret-{target} for it to apply to"
                )
