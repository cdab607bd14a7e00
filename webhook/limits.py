"""Bounds on what a client can hold of the webhook: the API server's own clients send a
whole review at once and wait at most the webhook timeout (5 s in the install), so
anything slower is a client to drop, not to wait for.

uvicorn's h11 protocol closes idle keep-alive connections, but it waits forever for a
connection that never sends a request or trickles its headers a byte at a time; a few
hundred of those (about 300 KiB each, TLS included) push a replica past its memory
limit, and with ``failurePolicy: Fail`` no annotated pod can be created. This
protocol adds:

- a read deadline: a request must arrive whole (headers and body) within
  ``read_timeout`` seconds of the connection or of the previous answer, else the
  connection is closed;
- a cap on open connections: beyond ``max_connections`` a new connection evicts the
  oldest one that has not delivered a whole request (so a flood of slow clients
  never locks out the API server), and is refused at once when every open
  connection is busy with a real request.

The body limit itself is the review route's (checked against Content-Length before
the body is read, and while it streams in).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

READ_TIMEOUT = 10.0
MAX_CONNECTIONS = 256


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a whole-request deadline and a connection cap."""

    read_timeout = READ_TIMEOUT
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self.waiting_since = time.monotonic()

    @property
    def receiving(self) -> bool:
        """Whether this connection owes a whole request (none yet, or one half-sent)."""
        state = self.conn.their_state
        idle = state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)
        return idle or state is h11.SEND_BODY

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections and not self._evict_one():
            self.transport = transport
            transport.abort()  # every slot holds a real request: refuse at once
            return
        super().connection_made(transport)
        self._arm()

    def _evict_one(self) -> bool:
        slow = [c for c in self.connections if isinstance(c, BoundedH11Protocol) and c.receiving]
        if not slow:
            return False
        min(slow, key=lambda c: c.waiting_since).transport.abort()
        return True

    def _arm(self) -> None:
        self._disarm()
        self.waiting_since = time.monotonic()
        self._deadline = self.loop.call_later(self.read_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.receiving and not self.transport.is_closing():
            self.transport.abort()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
