"""The agent in the test's own process: a real store with its reads counted, the
agent's JSON log captured. Used where a test needs short
timeouts or to look inside; the CLI tests run the real ``latchkey-sidecar``."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

from sidecar.agent import Agent
from sidecar.config import AgentConfig, parse
from sidecar.logs import Log
from sidecar.stores import open_store
from sidecar.stores.base import Lease, Secret, Store


class Counting:
    """The real store, with its reads counted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[str] = []

    @property
    def accessor(self) -> str | None:
        return self.store.accessor

    def login(self) -> None:
        self.store.login()

    def read(self, path: str) -> Secret:
        self.reads.append(path)
        return self.store.read(path)

    def renew(self, lease: Lease) -> Lease:
        return self.store.renew(lease)

    def issue(self, path: str, params: Mapping[str, str]) -> Secret:
        self.reads.append(path)
        return self.store.issue(path, params)

    def maintain(self) -> float:
        return self.store.maintain()

    def close(self, *, revoke: bool) -> None:
        self.store.close(revoke=revoke)


def make_agent(
    config: dict[str, Any], *, timeout: float = 10.0
) -> tuple[Agent, Counting, io.StringIO]:
    stream = io.StringIO()
    log = Log(stream, debug=True)
    model = parse(AgentConfig, config)
    store = Counting(open_store(model, log=log, timeout=timeout))
    return Agent(model, store, log=log), store, stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def messages(stream: io.StringIO) -> list[str]:
    return [record["msg"] for record in records(stream)]
