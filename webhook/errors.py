"""The webhook's errors, each mapped to one kind of answer in ``webhook.app``.

LatchkeyError
├── ConfigError        the admin's config file is unusable (process exits)
├── BadRequest         the AdmissionReview itself is malformed (HTTP 400)
└── Denied             the pod asks for something invalid (allowed: false)
    ├── AnnotationError  one annotation is wrong; the message names it
    └── AnnotationErrors several are wrong; all reported in one denial
"""

from __future__ import annotations

from collections.abc import Sequence

# A denial lists at most this many problems, so a pathological pod cannot make a huge answer.
MAX_REPORTED = 20


class LatchkeyError(Exception):
    """Base of every error the webhook raises on purpose."""


class ConfigError(LatchkeyError):
    """The admin's config file cannot be read or does not validate."""


class BadRequest(LatchkeyError):
    """The request body is not a usable AdmissionReview."""


class Denied(LatchkeyError):
    """The pod cannot be admitted as written; the message says why and how to fix it."""


class AnnotationError(Denied):
    """One ``latchkey.dev/`` annotation is invalid."""

    def __init__(self, annotation: str, problem: str) -> None:
        self.annotation = annotation
        super().__init__(f"annotation {annotation}: {problem}")


class AnnotationErrors(Denied):
    """Several annotations are wrong; reported together, one per line, to fix in one go."""

    def __init__(self, errors: Sequence[AnnotationError]) -> None:
        self.errors = tuple(sorted(errors, key=str))
        self.annotations = tuple(sorted({error.annotation for error in self.errors}))
        shown = [str(error) for error in self.errors[:MAX_REPORTED]]
        hidden = len(self.errors) - MAX_REPORTED
        super().__init__("\n".join(shown + ([f"and {hidden} more"] if hidden > 0 else [])))
