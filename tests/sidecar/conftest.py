"""Fixtures of the agent's tests: a seeded app, a PostgreSQL for leased secrets, and loops
in threads."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hack.localstore import Issuer, OpenBao
from sidecar.agent import Agent
from sidecar.loop import Loop
from tests.sidecar.agent_helpers import App
from tests.sidecar.database import Postgres


@pytest.fixture
def app(openbao: OpenBao, issuer: Issuer, tmp_path: Path) -> App:
    """An app with its own role, policy and secrets on the session's OpenBao."""
    return App(openbao, issuer, tmp_path).seed()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL for every leased-secret test of the session."""
    db = Postgres()
    db.start()
    yield db
    db.stop()


@pytest.fixture
def running() -> Iterator[Callable[[Agent], threading.Event]]:
    """Start an agent's loop in a thread; stop it (revoking its token) after the test."""
    started: list[tuple[threading.Thread, threading.Event, Agent]] = []

    def start(agent: Agent) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=Loop(agent, stop=stop).run, daemon=True)
        thread.start()
        started.append((thread, stop, agent))
        return stop

    yield start
    for thread, stop, agent in started:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the loop stops promptly when told"
        agent.store.close(revoke=True)


@pytest.fixture
def logs() -> io.StringIO:
    """The agent's log lines of one test (``Log(logs)``), to read or scan for values."""
    return io.StringIO()
