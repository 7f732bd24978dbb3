"""Run the real stack: redis-server, the engine, Celery workers and gunicorn, as processes.

One private stack serves the whole session; each fixture starts its part the first time a test
asks for it, and the stack stops everything at the end.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.stack import PrivateStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory):
    stack = PrivateStack(tmp_path_factory.mktemp("stack"),
                         engine_args=("--model", "smollm2:135m", "--model", "phi3:mini",
                                      "--token-ms", "2", "--load-ms", "5"),
                         settings={"MES_BACKEND_MAX_RETRIES": "1"}, web_workers=2)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def log_dir(shared_stack):
    return shared_stack.log_dir


@pytest.fixture(scope="session")
def redis_url(shared_stack):
    shared_stack.start_redis()
    return shared_stack.redis_url


@pytest.fixture(scope="session")
def engine(shared_stack, redis_url):
    return shared_stack.start_engine()


@pytest.fixture(scope="session")
def stack_env(shared_stack, engine):
    return shared_stack.env()


@pytest.fixture(scope="session")
def workers(shared_stack, engine):
    return [shared_stack.start_worker("smollm", concurrency=2, queue="mes.smollm"),
            shared_stack.start_worker("phi", concurrency=1, queue="mes.phi")]


@pytest.fixture(scope="session")
def web(shared_stack, workers):
    shared_stack.start_web()
    return shared_stack.web_url


@pytest.fixture
def engine_faults(engine):
    """Set engine faults for one test and always clear them after."""
    def set_faults(**faults):
        requests.post(engine + "/mes-engine/faults", json=faults, timeout=5).raise_for_status()
    yield set_faults
    requests.delete(engine + "/mes-engine/faults", timeout=5)
