"""Exponential backoff with full jitter, and the ``--once`` retry-until-deadline.

Full jitter (a uniform delay between zero and the exponential cap) keeps a
fleet of pods that lost the store together from coming back together.
A 429's ``Retry-After`` is a floor under the delay.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from sidecar.errors import AgentError, StoreUnavailable
from sidecar.logs import Log


class Backoff:
    """Delays of ``uniform(0, min(cap, base * 2**attempt))`` seconds."""

    def __init__(
        self, *, base: float = 0.25, cap: float = 30.0, rng: Callable[[], float] = random.random
    ) -> None:
        self.base = base
        self.cap = cap
        self._rng = rng
        self.attempt = 0

    def delay(self, error: AgentError | None = None) -> float:
        """The next delay; at least what the store asked for with Retry-After."""
        ceiling = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt += 1
        delay = self._rng() * ceiling
        if isinstance(error, StoreUnavailable) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.cap))
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_until(
    action: Callable[[], None],
    *,
    deadline: float,
    log: Log,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run ``action``; retry retryable errors until ``deadline`` seconds have passed.

    A non-retryable error is raised at once; the last retryable one is raised
    when the next attempt would start past the deadline, its message saying so.
    """
    backoff = backoff or Backoff()
    end = clock() + deadline
    while True:
        try:
            action()
            return
        except AgentError as exc:
            if not exc.retryable:
                raise
            delay = backoff.delay(exc)
            if clock() + delay >= end:
                attempts = backoff.attempt
                exc.args = (f"{exc} (gave up after {attempts} attempts in {deadline:g}s)",)
                raise
            log.warning(
                "retrying", error=str(exc), attempt=backoff.attempt, backoff=round(delay, 3)
            )
            sleep(delay)
