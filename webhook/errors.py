"""The webhook's errors, each mapped to one kind of answer in ``webhook.app``.

LatchkeyError
├── ConfigError        the admin's config file is unusable (process exits)
├── BadRequest         the AdmissionReview itself is malformed (HTTP 400)
└── Denied             the pod asks for something invalid (allowed: false)
    └── AnnotationError  one annotation is wrong; the message names it
"""

from __future__ import annotations


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
