"""Serving TLS from a certificate and key on disk, reloaded when they change.

cert-manager renews the certificate by rewriting the Secret's files (an atomic
symlink swap in a Secret volume). The server context's ``sni_callback`` runs
for every handshake, SNI or not, and hands the connection the freshest context
it has; the files are looked at no more than once a second. A pair that does
not load (a key from one generation, a certificate from another, a half-written
file) is logged and skipped: the last good pair keeps serving.

This module knows nothing of HTTP; uvicorn gets :meth:`ReloadingTLS.server_context`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from webhook.errors import ConfigError

log = logging.getLogger(__name__)

Stamp = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class Loaded:
    """One loaded pair: the context new connections get, and what it serves."""

    context: ssl.SSLContext
    serial: int
    not_after: dt.datetime


def _stamp(*paths: Path) -> Stamp:
    """What changes when a file is rewritten or its symlink is swapped."""
    stats = (os.stat(path) for path in paths)
    return tuple((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) for st in stats)


def load_pair(cert_file: Path, key_file: Path) -> Loaded:
    """A server context for the pair; OpenSSL refuses a key that does not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    leaf = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return Loaded(context, leaf.serial_number, leaf.not_valid_after_utc)


class ReloadingTLS:
    """The serving certificate, swapped in for new connections when the files change."""

    def __init__(
        self,
        cert_file: Path,
        key_file: Path,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self._min_interval = min_interval
        self._clock = clock
        try:
            self._stamp = _stamp(cert_file, key_file)
            self._loaded = load_pair(cert_file, key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"cannot load TLS pair {cert_file}, {key_file}: {exc}") from exc
        self._checked_at = clock()
        self._failed: Stamp | None = None
        self._server = self._loaded.context
        self._server.sni_callback = self._on_hello

    @property
    def serial(self) -> int:
        return self._loaded.serial

    @property
    def not_after(self) -> dt.datetime:
        return self._loaded.not_after

    def server_context(self) -> ssl.SSLContext:
        """The context to listen with; each handshake is handed the current pair."""
        return self._server

    def problem(self) -> str | None:
        """Why the server is not ready to serve, or None."""
        if self.not_after <= dt.datetime.now(dt.UTC):
            return f"serving certificate expired at {self.not_after.isoformat()}"
        return None

    def current(self) -> ssl.SSLContext:
        """The freshest good context, looking at the files at most once per interval."""
        now = self._clock()
        if now - self._checked_at >= self._min_interval:
            self._checked_at = now
            self._reload_if_changed()
        return self._loaded.context

    def _on_hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: object
    ) -> None:
        conn.context = self.current()

    def _reload_if_changed(self) -> None:
        try:
            before = _stamp(self.cert_file, self.key_file)
            if before in (self._stamp, self._failed):
                return
            loaded = load_pair(self.cert_file, self.key_file)
            if _stamp(self.cert_file, self.key_file) != before:
                return  # rewritten while we read: take it on the next look
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._note_failure(exc)
            return
        self._stamp, self._loaded, self._failed = before, loaded, None
        log.info(
            "serving certificate reloaded",
            extra={"serial": f"{loaded.serial:x}", "not_after": loaded.not_after.isoformat()},
        )

    def _note_failure(self, exc: Exception) -> None:
        """Log a bad pair once, not on every look, and keep serving the old one."""
        try:
            failed = _stamp(self.cert_file, self.key_file)
        except OSError:
            failed = ()  # a file is missing: one log line until it is back
        if failed != self._failed:
            log.warning("new TLS pair does not load; serving the previous one: %s", exc)
        self._failed = failed
