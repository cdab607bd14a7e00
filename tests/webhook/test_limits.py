"""The webhook's transport wrapper (webhook.limits): the writes of one event-loop step go
out as one, at its end; closing sends what is pending, aborting drops it."""

from __future__ import annotations

import asyncio
from typing import Any

from webhook.limits import _CoalescingTransport


class FakeTransport:
    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(data)

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append("eof")

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


def run(steps: Any) -> FakeTransport:
    """Run ``steps(transport, wrapped)`` in an event loop; the transport after two more steps."""
    fake = FakeTransport()

    async def main() -> None:
        wrapped = _CoalescingTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        await steps(fake, wrapped)
        for _ in range(2):
            await asyncio.sleep(0)

    asyncio.run(main())
    return fake


def test_the_writes_of_one_step_are_sent_as_one_at_its_end() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
        wrapped.write(b"")
        wrapped.write(bytearray(b"{}"))
        assert fake.calls == []
        await asyncio.sleep(0)
        assert fake.calls == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        wrapped.writelines([b"a", b"b"])
        await asyncio.sleep(0)

    assert run(steps).calls == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"ab"]


def test_closing_sends_what_is_pending_first() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        wrapped.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        wrapped.close()
        assert fake.calls == [b"HTTP/1.1 400 Bad Request\r\n\r\n", "close"]

    assert run(steps).calls == [b"HTTP/1.1 400 Bad Request\r\n\r\n", "close"]


def test_eof_follows_what_is_pending() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        wrapped.write(b"last")
        wrapped.write_eof()

    assert run(steps).calls == [b"last", "eof"]


def test_aborting_drops_what_is_pending() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        wrapped.write(b"never sent")
        wrapped.abort()

    assert run(steps).calls == ["abort"]


def test_nothing_is_written_to_a_transport_closed_meanwhile() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        wrapped.write(b"too late")
        fake.closing = True  # the peer went away: connection_lost

    assert run(steps).calls == []


def test_everything_else_is_the_transport_s_own() -> None:
    async def steps(fake: FakeTransport, wrapped: _CoalescingTransport) -> None:
        assert wrapped.get_extra_info("peername") == "info peername"
        assert wrapped.is_closing() is False

    run(steps)
