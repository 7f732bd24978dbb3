"""Run the real stack: redis-server, the engine, Celery workers and gunicorn, as processes."""

from __future__ import annotations

import os
import sys

import pytest
import redis as redis_lib
import requests

from mes.store.health import count_workers
from mes.stack import free_port, web_command, worker_command
from tests.conftest import KEYS, MODELS_FILE
from tests.procs import Proc, start_engine, start_redis, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("stack")


@pytest.fixture(scope="session")
def redis_url(log_dir):
    proc, url = start_redis(log_dir)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def base_env(redis_url):
    env = dict(os.environ)
    env.update({"MES_REDIS_URL": redis_url, "MES_MODELS_FILE": str(MODELS_FILE),
                "MES_API_KEYS": KEYS, "MES_BACKEND_MAX_RETRIES": "1",
                "MES_WORKER_HEARTBEAT_S": "1", "PYTHONUNBUFFERED": "1"})
    return env


@pytest.fixture(scope="session")
def engine(log_dir, base_env):
    proc, url = start_engine(log_dir, base_env, "--model", "smollm2:135m", "--model", "phi3:mini",
                             "--token-ms", "2", "--load-ms", "5")
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def stack_env(base_env, engine):
    return {**base_env, "MES_OLLAMA_URL": engine}


@pytest.fixture(scope="session")
def workers(stack_env, redis_url, log_dir):
    bin_dir = os.path.dirname(sys.executable)
    env = {**stack_env, "PATH": bin_dir + os.pathsep + stack_env.get("PATH", "")}
    procs = [Proc("worker-smollm", worker_command("mes.smollm", "smollm", 2), env, log_dir),
             Proc("worker-phi", worker_command("mes.phi", "phi", 1), env, log_dir)]
    client = redis_lib.Redis.from_url(redis_url)
    for proc, queue in zip(procs, ["mes.smollm", "mes.phi"]):
        wait_until(lambda: count_workers(client, [queue])[queue] > 0, 60,
                   f"{proc.name} heartbeat", proc)
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="session")
def web(stack_env, log_dir, workers):
    port = free_port()
    bin_dir = os.path.dirname(sys.executable)
    env = {**stack_env, "PATH": bin_dir + os.pathsep + stack_env.get("PATH", "")}
    proc = Proc("web", web_command("127.0.0.1", port, 2), env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url + "/health", timeout=1).ok, 30, "gunicorn", proc)
    yield url
    proc.stop()


@pytest.fixture
def engine_faults(engine):
    """Set engine faults for one test and always clear them after."""
    def set_faults(**faults):
        requests.post(engine + "/mes-engine/faults", json=faults, timeout=5).raise_for_status()
    yield set_faults
    requests.delete(engine + "/mes-engine/faults", timeout=5)
