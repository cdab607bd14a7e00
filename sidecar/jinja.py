"""Templates over several secrets (``jinja-<name>``): Jinja2 in its sandbox, bounded.

Imported only by pods that use one, so the plain path's start time does not grow.
The template sees one variable, ``secrets``, mapping each secret it names to that
secret's fields (``{{ secrets.db.password }}``, ``{% for k, v in secrets.api.items()
%}``). What it cannot do: reach into Python objects (the sandbox refuses underscore
attributes and unsafe calls), read files or the network (no loader, no imports),
run away (``range`` and repetition share a budget, output is cut off at
:data:`MAX_OUTPUT`, rendering at :data:`MAX_SECONDS`, recursion is caught). Every
error names the template and the missing name or the rule it broke, never a value.

Filters beyond Jinja's own (``default``, ``join``, ``upper``, ...): ``b64encode``,
``b64decode``, ``tojson`` (plain JSON, no HTML escaping) and ``toyaml`` (a YAML
scalar or flow value, quoted as YAML needs).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sidecar.errors import RenderError

MAX_OUTPUT = 1024 * 1024  # bytes of one rendered file
MAX_SECONDS = 2.0
MAX_ITEMS = 100_000  # what range() and repetition may make, all calls together
VARIABLE = "secrets"


class _Budget:
    """Items the template may still make with ``range`` and ``*``, per render."""

    def __init__(self) -> None:
        self.left = MAX_ITEMS

    def spend(self, count: int) -> None:
        self.left -= max(count, 0)
        if self.left < 0:
            raise SecurityError(f"the template makes more than {MAX_ITEMS} items")


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            raise SecurityError("the template may not use **")
        sized = next((v for v in (left, right) if isinstance(v, str | list | tuple)), None)
        if sized is not None:
            times = right if sized is left else left
            if isinstance(times, int):
                context.environment.budget.spend(len(sized) * times)
        return super().call_binop(context, operator, left, right)


def _b64decode(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise SecurityError("b64decode: the value is not base64 of UTF-8 text") from None


def _toyaml(value: Any) -> str:
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1 << 30)
    return text.removesuffix("\n").removesuffix("\n...")


@functools.cache
def _environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()  # no cycler, joiner, lipsum, namespace: only secrets and range
    env.filters.update(
        b64encode=lambda v: base64.b64encode(str(v).encode()).decode(),
        b64decode=_b64decode,
        tojson=lambda v: json.dumps(v, ensure_ascii=False),
        toyaml=_toyaml,
    )
    return env


def parse(template: str) -> nodes.Template:
    """The template's syntax tree; ValueError with the line when it does not parse."""
    try:
        return _environment().parse(template)
    except TemplateSyntaxError as exc:
        raise ValueError(f"line {exc.lineno}: {exc.message}") from None


def secrets_used(tree: nodes.Template) -> tuple[set[str], list[str]]:
    """The secret names a template reads (``secrets.x``, ``secrets['x']``) and every
    problem with how it names them: only that one variable, and constant names."""
    used: set[str] = set()
    problems: list[str] = []
    named: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == VARIABLE):
            continue
        named.add(id(target))
        key = getattr(node, "attr", None)
        if key is None:
            arg = getattr(node, "arg", None)
            key = arg.value if isinstance(arg, nodes.Const) else None
        if isinstance(key, str):
            used.add(key)
        else:
            problems.append(f"name each secret as {VARIABLE}.NAME or {VARIABLE}['NAME']")
    for name in tree.find_all(nodes.Name):
        if name.ctx != "load" or id(name) in named:
            continue
        if name.name == VARIABLE:
            problems.append(f"use {VARIABLE}.NAME, not {VARIABLE} as a whole")
    from jinja2 import meta

    unknown = sorted(meta.find_undeclared_variables(tree) - {VARIABLE, "range"})
    problems += [f"unknown variable {name}: the template sees only {VARIABLE}" for name in unknown]
    return used, problems


def render(name: str, template: str, secrets: Mapping[str, Any]) -> bytes:
    """The rendered file; RenderError names the file and what went wrong, never a value."""
    env = _environment()
    budget = _Budget()

    def bounded_range(*args: int) -> range:
        items = range(*args)
        budget.spend(len(items))
        return items

    try:
        compiled = env.from_string(template, globals={"range": bounded_range})
        env.budget = budget  # type: ignore[attr-defined]  # read by call_binop
        return _collect(name, compiled.generate({VARIABLE: secrets}))
    except TemplateSyntaxError as exc:
        raise RenderError(f"file {name}: template line {exc.lineno}: {exc.message}") from None
    except SecurityError as exc:
        raise RenderError(f"file {name}: template refused by the sandbox: {exc}") from None
    except TemplateError as exc:  # UndefinedError names the missing attribute or key
        raise RenderError(f"file {name}: template: {exc.message}") from None
    except RecursionError:
        raise RenderError(f"file {name}: template recursed too deep") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise RenderError(f"file {name}: template failed: {type(exc).__name__}") from None


def _collect(name: str, chunks: Iterator[str]) -> bytes:
    out: list[bytes] = []
    size, deadline = 0, time.monotonic() + MAX_SECONDS
    for chunk in chunks:
        data = chunk.encode()
        size += len(data)
        if size > MAX_OUTPUT:
            raise RenderError(f"file {name}: template output is over {MAX_OUTPUT} bytes")
        if time.monotonic() > deadline:
            raise RenderError(f"file {name}: template took over {MAX_SECONDS:g} s")
        out.append(data)
    return b"".join(out)
