"""The benchmarks' load generator: a lean HTTP/1.1 keep-alive client, in its own process.

    python hack/bench/loadgen.py URL BODY_FILE --ca CA_FILE --concurrency 16 --requests 3000 \
        [--vary TEXT ...]

Each ``--vary`` text is replaced, wherever the body holds it, by one of the same length
that differs per request (its last five characters, the request's number from
``--first``, in hex), as the review uid and
the token volume's name differ from one pod to the next in a cluster.

Standard library only (asyncio streams over TLS, no HTTP library): it must cost
less CPU per request than the servers it measures, or it measures itself. Each of
``concurrency`` connections sends POSTs back to back; every answer must be a 200
whose body says ``"allowed": true``. Prints one JSON object: the latencies in
seconds, the wall time, and this process's own CPU seconds, so the caller can
show that the client was not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ALLOWED = re.compile(rb'"allowed":\s*true')


def request_head(host: str, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One response: status code and body (Content-Length framing, as uvicorn sends)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


class Payloads:
    """The request bytes, each with its own values for the ``--vary`` texts."""

    def __init__(self, host: str, path: str, body: bytes, vary: list[str], first: int) -> None:
        self.head = request_head(host, path, len(body))
        texts = [t.encode() for t in vary]
        pattern = re.compile(b"|".join(re.escape(t) for t in texts)) if texts else None
        self.parts = pattern.split(body) if pattern else [body]
        self.found = pattern.findall(body) if pattern else []
        self.sent = first

    def next(self) -> bytes:
        self.sent += 1
        tail = b"%05x" % (self.sent % 0x100000)
        pieces = [self.head, self.parts[0]]
        for text, part in zip(self.found, self.parts[1:], strict=True):
            pieces += (text[:-5], tail, part)
        return b"".join(pieces)


async def connection(
    url: str, context: ssl.SSLContext, payloads: Payloads, count: int, latencies: list[float]
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or 443
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        for _ in range(count):
            payload = payloads.next()
            started = time.perf_counter()
            writer.write(payload)
            status, body = await read_answer(reader)
            latencies.append(time.perf_counter() - started)
            if status != 200 or not ALLOWED.search(body):
                raise SystemExit(f"{url} answered {status}: {body[:300]!r}")
    finally:
        writer.close()


async def run(args: argparse.Namespace) -> dict[str, object]:
    context = ssl.create_default_context(cafile=str(args.ca))
    parts = urlsplit(args.url)
    body = Path(args.body).read_bytes()
    payloads = Payloads(parts.netloc, parts.path or "/", body, args.vary, args.first)
    latencies: list[float] = []
    per = max(1, args.requests // args.concurrency)
    before = os.times()
    started = time.perf_counter()
    await asyncio.gather(
        *(connection(args.url, context, payloads, per, latencies) for _ in range(args.concurrency))
    )
    seconds = time.perf_counter() - started
    after = os.times()
    return {
        "latencies": latencies,
        "seconds": seconds,
        "client_cpu": after.user + after.system - before.user - before.system,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path)
    parser.add_argument("--ca", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--vary", action="append", default=[], metavar="TEXT")
    parser.add_argument("--first", type=int, default=0, help="number the requests from here")
    args = parser.parse_args()
    json.dump(asyncio.run(run(args)), sys.stdout)


if __name__ == "__main__":
    main()
