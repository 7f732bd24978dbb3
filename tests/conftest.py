"""Build the shared test objects and pass them in; no patching."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from mes.backends.ollama import OllamaClient
from mes.clock import SystemClock
from mes.engine.config import EngineConfig
from mes.engine.server import EngineServer
from mes.registry import ModelRegistry
from mes.services import Services
from mes.settings import Settings
from mes.store.jobs import RedisJobStore
from tests.support.roundtrips import CountingRedis

FIXTURES = Path(__file__).parent / "fixtures"
MODELS_FILE = FIXTURES / "models.json"
KEYS = "alice:alice-secret-1:jobs,bob:bob-secret-22:jobs,ops:ops-secret-333:models,root:root-secret-4444:admin"


class FakeClock(SystemClock):
    """Tell a time that tests move by hand."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.t = start

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def settings() -> Settings:
    return Settings.from_env({"MES_MODELS_FILE": str(MODELS_FILE), "MES_API_KEYS": KEYS,
                              "MES_BACKEND_MAX_RETRIES": "2"})


@pytest.fixture
def registry() -> ModelRegistry:
    return ModelRegistry.from_file(MODELS_FILE)


@pytest.fixture
def redis():
    client = fakeredis.FakeRedis(decode_responses=True)
    yield client
    client.flushall()


@pytest.fixture(scope="module")
def engine():
    """The engine in this process, over HTTP: every test model but ghost:1b."""
    server = EngineServer(EngineConfig(port=0, models=["smollm2:135m", "phi3:mini"])).start()
    yield server
    server.shutdown()


@pytest.fixture
def counting() -> CountingRedis:
    """A fake Redis that counts the round trips made from the thread that asks it to."""
    client = CountingRedis(decode_responses=True)
    yield client
    client.flushall()


@pytest.fixture
def store(redis) -> RedisJobStore:
    return RedisJobStore(redis, ttl_s=3600)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_services(settings, redis, store, registry, backend_url, clock) -> Services:
    """Assemble Services from test objects."""
    return Services(settings=settings, redis=redis, store=store, registry=registry,
                    backend=OllamaClient(backend_url, connect_timeout_s=1, read_timeout_s=10),
                    clock=clock, backend_name="ollama")
