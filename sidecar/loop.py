"""The long-running agent: keep the files fresh until told to stop.

What is due and when: static secrets are read again every ``refreshSeconds``
(+-10% jitter, so pods started together spread out); leased secrets are renewed
at 2/3 of their lease and read again when the lease is not renewable, the
renewal fails, or it came back shorter than asked (the max TTL is near). The
store's own login is kept alive by :meth:`Store.maintain` at every tick.
A failure backs off with jitter and keeps the last good files; ``alive`` is
touched at least every :data:`sidecar.probe.TICK` seconds, even while backing off,
so the liveness probe restarts a hung agent and only a hung one.

Before the first complete write there are no good files to keep: an error that
retrying cannot cure (a denied role, a missing path, a bad key) ends the run, so
the container exits with that one line and the pod shows it (CrashLoopBackOff,
termination message) instead of an agent retrying silently forever. Outages are
still retried. All times here are on the monotonic clock: the wall clock may
jump, and the store's is never used (lease durations are relative).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import msgspec

from sidecar.agent import ALIVE_FILE, Agent
from sidecar.config import CertificateFile
from sidecar.errors import AgentError, StoreError, StoreUnavailable, WriteError
from sidecar.metrics import Stats
from sidecar.probe import TICK
from sidecar.retry import Backoff
from sidecar.state import to_wall
from sidecar.stores.base import Lease, Secret

RENEW_AT = 2 / 3
JITTER = 0.1
MIN_DELAY = 1.0  # never hammer the store about a lease that is (nearly) over


class Loop:
    """Runs :class:`Agent` passes as they fall due, until ``stop`` is set."""

    def __init__(
        self,
        agent: Agent,
        *,
        stop: threading.Event,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.agent = agent
        self.log = agent.log
        self.stop = stop
        self.stats = stats or Stats()
        self._clock = clock
        self._rng = rng
        self._backoff = Backoff(rng=rng)
        self._retry_at: float | None = None
        self._next_refresh = float("inf")
        self._lease_due: dict[str, float] = {}
        self._login_due = float("inf")
        self._expired: set[str] = set()

    def run(self) -> None:
        """The first complete write (outages retried until it succeeds), then refreshes.

        Raises the first non-retryable error met before the first complete write.
        """
        while not self.stop.is_set() and not self._attempt(self._first_write, first=True):
            self._sleep_until(self._retry_at or self._clock())
        while not self.stop.is_set():
            self._sleep_until(self._next_wake())
            if not self.stop.is_set():
                self._attempt(self._refresh_due)

    def _attempt(self, work: Callable[[], bool], *, first: bool = False) -> bool:
        try:
            wrote = work()
        except AgentError as exc:
            self.stats.failed(exc)
            if first and not exc.retryable:
                raise
            delay = self._backoff.delay(exc)
            self._retry_at = self._clock() + delay
            self.log.error(
                "no files yet; will retry" if first else "keeping the last good files; will retry",
                error=str(exc),
                attempt=self._backoff.attempt,
                backoff=round(delay, 3),
            )
            self._report_expired()
            return False
        self._backoff.reset()
        self._retry_at = None
        self._expired.clear()
        if wrote:
            leases = [s.lease.expires_at for s in self.agent.secrets.values() if s.lease]
            self.stats.succeeded(at=time.time(), lease_ends=map(to_wall, leases))
        return True

    def _report_expired(self) -> None:
        """A certificate past its end that could not be issued again: say so once; the
        old files stay (the app may still be serving with them) and the retries go on."""
        now = self._clock()
        for certificate, lease in self._certificate_leases():
            if now >= lease.expires_at:
                self._expired.add(certificate.key)
                self.stats.failed(StoreUnavailable(f"certificate {certificate.name} expired"))
                self.log.error(
                    "certificate expired and could not be issued again",
                    file=certificate.files[0], path=certificate.path,
                )  # fmt: skip

    def _first_write(self) -> bool:
        self.agent.start(adopt=True)
        self._login_due = self.agent.login_due
        now = self._clock()
        self._next_refresh = now + self._jittered(self.agent.config.refresh_seconds)
        for path, secret in self.agent.secrets.items():
            self._schedule(path, secret, now)
        return True

    def _next_wake(self) -> float:
        if self._retry_at is not None:
            # Backing off; still wake when a certificate runs out, to try and to say so.
            ends = [lease.expires_at for _, lease in self._certificate_leases()]
            return min([self._retry_at, *ends])
        return min(self._next_refresh, self._login_due, *self._lease_due.values())

    def _certificate_leases(self) -> Iterator[tuple[CertificateFile, Lease]]:
        """Each certificate held whose expiry is not yet reported, with its lifetime."""
        for certificate in self.agent.config.certificates:
            secret = self.agent.secrets.get(certificate.key)
            if secret and secret.lease and certificate.key not in self._expired:
                yield certificate, secret.lease

    def _sleep_until(self, when: float) -> None:
        """Sleep in ticks, touching ``alive`` each time, until ``when`` or stop."""
        while not self.stop.is_set():
            self._touch_alive()
            remaining = when - self._clock()
            if remaining <= 0:
                return
            self.stop.wait(min(remaining, TICK))

    def _touch_alive(self) -> None:
        try:
            self.agent.mark(ALIVE_FILE)
        except WriteError as exc:
            self.log.warning("liveness file not touched", error=str(exc))

    # --- one refresh pass ------------------------------------------------------------

    def _refresh_due(self) -> bool:
        """One pass over what is due; True when it read (and so maybe wrote) anything."""
        self._login_due = self.agent.store.maintain()
        now = self._clock()
        reads = self._due_reads(now)
        if reads:
            changed = self.agent.refresh(reads)
            now = self._clock()
            for path in reads:
                self._schedule(path, self.agent.secrets[path], now)
            if now >= self._next_refresh:
                self._next_refresh = now + self._jittered(self.agent.config.refresh_seconds)
            if changed:
                self._on_change(changed)
        return bool(reads)

    def _due_reads(self, now: float) -> list[str]:
        """The paths to read now; due leases are renewed here, and read only if that fails."""
        reads = []
        for path, due in list(self._lease_due.items()):
            if now >= due and not self._renewed(path, now):
                reads.append(path)
        if now >= self._next_refresh:
            reads += [p for p, s in self.agent.secrets.items() if s.lease is None]
        return reads

    def _renewed(self, path: str, now: float) -> bool:
        secret = self.agent.secrets[path]
        lease = secret.lease
        if lease is None or not lease.renewable:
            return False
        try:
            renewed = self.agent.store.renew(lease)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            self.log.warning("lease not renewed; reading again", path=path, error=str(exc))
            return False
        if renewed.duration < lease.duration:
            self.log.info("lease near its max TTL; reading again", path=path)
            return False
        self.log.info("lease renewed", path=path, ttl=renewed.duration)
        self.agent.secrets[path] = msgspec.structs.replace(secret, lease=renewed)
        self.agent.save_leases()
        self._schedule(path, self.agent.secrets[path], now)
        return True

    def _schedule(self, path: str, secret: Secret, now: float) -> None:
        if secret.lease is None:
            self._lease_due.pop(path, None)
        else:
            self._lease_due[path] = _lease_due(secret.lease, now)

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 - JITTER + 2 * JITTER * self._rng())

    def _on_change(self, changed: list[str]) -> None:
        self.log.info("files updated", files=changed)
        if not self.agent.config.on_change:
            return
        from sidecar.onchange import run_actions

        self.log.info("running on-change actions", files=changed)
        run_actions(self.agent.config.on_change, log=self.log)


def _lease_due(lease: Lease, now: float) -> float:
    """When to act on a lease: at 2/3 of its duration (counted from when it was granted,
    which for an adopted lease is before this run), and not sooner than a second away."""
    return max(now + MIN_DELAY, lease.expires_at - lease.duration * (1 - RENEW_AT))
