"""Fixtures that run the engine in-thread on a free port and tear it down afterwards."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import pytest
import requests

from mes.engine.config import EngineConfig
from mes.engine.server import EngineServer


@pytest.fixture
def make_engine() -> Iterator[Callable[..., EngineServer]]:
    """Return a factory: make_engine(**EngineConfig fields) -> started EngineServer on port 0."""
    started: list[EngineServer] = []

    def factory(**overrides: Any) -> EngineServer:
        overrides.setdefault("port", 0)
        engine = EngineServer(EngineConfig(**overrides)).start()
        started.append(engine)
        return engine

    yield factory
    for engine in started:
        engine.shutdown()
    names = {f"mes-engine:{e.port}" for e in started} | {f"mes-engine-conn:{e.port}" for e in started}
    deadline = time.monotonic() + 5
    while any(t.name in names for t in threading.enumerate()):
        assert time.monotonic() < deadline, "engine threads outlived shutdown()"
        time.sleep(0.01)


@pytest.fixture
def engine(make_engine: Callable[..., EngineServer]) -> EngineServer:
    """Return a started engine with zero latency and the default catalogue."""
    return make_engine()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """Return a requests session that is closed after the test."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """Return wait_until(predicate, timeout=5): poll until predicate() is truthy, else fail."""

    def wait(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.01)

    return wait
