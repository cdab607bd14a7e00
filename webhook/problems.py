"""Collecting every annotation problem of one pod before denying it.

Users fix a pod in one go when the denial lists everything wrong at once, so the
parsers record problems here instead of raising at the first. This module only
gathers and words them; it knows nothing about which annotations exist.
"""

from __future__ import annotations

import json

from webhook.errors import AnnotationError, AnnotationErrors

PREFIX = "latchkey.dev/"

# Values echoed back in a message are cut to this length: annotations can be large,
# and a denial travels through the API server, events and logs.
MAX_ECHO = 64


def echo(value: object) -> str:
    """A user's value quoted for a message, shortened and with control characters escaped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > MAX_ECHO:
        text = text[:MAX_ECHO] + "..."
    return json.dumps(text, ensure_ascii=False)


def key_of(name: str) -> str:
    """The full annotation key for a name under our prefix, shortened if absurdly long."""
    return PREFIX + (name if len(name) <= MAX_ECHO else name[:MAX_ECHO] + "...")


class Problems:
    """The annotation problems found so far in one pod."""

    def __init__(self) -> None:
        self._errors: list[AnnotationError] = []

    def add(self, name: str, problem: str) -> None:
        """Record that annotation ``latchkey.dev/<name>`` is wrong in the way ``problem`` says."""
        self._errors.append(AnnotationError(key_of(name), problem))

    def raise_if_any(self) -> None:
        """Deny the pod with every recorded problem, if there is one."""
        if len(self._errors) == 1:
            raise self._errors[0]
        if self._errors:
            raise AnnotationErrors(self._errors)
