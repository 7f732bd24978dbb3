"""The whole stack on a real model: gunicorn -> Redis -> a Celery worker -> mes engine (llamacpp) -> SmolLM2.

The engine is started with the very command `mes up` uses without --simulated, so this
also proves that `mes up` runs the llamacpp generator. Everything here is private to the
module (its own redis-server on a free port), so the simulated stack's workers, which
listen on the same queue names, never see these jobs.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import jsonschema
import pytest
import redis as redis_lib
import requests

from mes.store.health import count_workers
from mes.stack import StackOptions, free_port, process_table, web_command, worker_command
from mes.registry import ModelRegistry
from mes.bench.processes import Proc, start_redis, wait_until
from tests.conftest import KEYS, MODELS_FILE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama-cpp-python is not installed (make install installs it)"),
]

ALICE = {"Authorization": "Bearer alice-secret-1"}
MODEL = "smollm2:135m"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 24}, "is_capital": {"type": "boolean"}},
    "required": ["city", "is_capital"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def real_stack(tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("real-model")
    procs: list[Proc] = []
    redis_proc, redis_url = start_redis(log_dir)
    procs.append(redis_proc)
    env = {k: v for k, v in os.environ.items() if k not in ("MES_ENGINE_GENERATOR", "MES_OLLAMA_URL")}
    env.update({"MES_REDIS_URL": redis_url, "MES_MODELS_FILE": str(MODELS_FILE), "MES_API_KEYS": KEYS,
                "MES_WORKER_HEARTBEAT_S": "1", "PYTHONUNBUFFERED": "1",
                "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")})
    try:
        engine_port = free_port()
        table = process_table(ModelRegistry.from_file(MODELS_FILE), StackOptions(engine_port=engine_port))
        assert "--simulated" not in table["engine"]  # what `mes up` runs without --simulated
        # One llama.cpp thread: on a busy 2-core CI machine two threads mostly wait for each other.
        engine = Proc("engine-llamacpp", table["engine"] + " --threads 1", env, log_dir)
        procs.append(engine)
        engine_url = f"http://127.0.0.1:{engine_port}"
        wait_until(lambda: requests.get(engine_url + "/api/version", timeout=1).ok, 90, "llamacpp engine", engine)
        env["MES_OLLAMA_URL"] = engine_url
        worker = Proc("worker-smollm", worker_command("mes.smollm", "smollm", 1), env, log_dir)
        procs.append(worker)
        client = redis_lib.Redis.from_url(redis_url)
        wait_until(lambda: count_workers(client, ["mes.smollm"])["mes.smollm"] > 0, 90,
                   "worker heartbeat", worker)
        web_port = free_port()
        web = Proc("web", web_command("127.0.0.1", web_port, 1), env, log_dir)
        procs.append(web)
        web_url = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: requests.get(web_url + "/health", timeout=1).ok, 60, "gunicorn", web)
        yield {"web": web_url, "engine": engine_url, "procs": procs}
    finally:
        for proc in reversed(procs):
            proc.stop()


def logs(stack) -> str:
    return "\n".join(f"--- {p.name}\n{p.log(2000)}" for p in stack["procs"])


def test_real_text_comes_back(real_stack):
    response = requests.post(real_stack["web"] + "/v1/inference", headers=ALICE, timeout=120, json={
        "model": MODEL, "prompt": "What is the capital of France?", "wait_s": 90})
    assert response.status_code == 200, response.text + logs(real_stack)
    job = response.json()
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["text"].strip() and result["done_reason"] in ("stop", "length")
    # Real token counts: the chat template alone is more than a dozen tokens.
    assert result["usage"]["prompt_tokens"] > 12 and result["usage"]["completion_tokens"] > 0
    engine = requests.get(real_stack["engine"] + "/mes-engine/stats", timeout=5).json()
    assert engine["models"][MODEL]["completed"] >= 1
    (running,) = requests.get(real_stack["engine"] + "/api/ps", timeout=5).json()["models"]
    assert running["name"] == MODEL and running["context_length"] == 2048  # the registry's num_ctx


def test_structured_output_validates(real_stack):
    response = requests.post(real_stack["web"] + "/v1/inference", headers=ALICE, timeout=120, json={
        "model": MODEL, "prompt": "Paris is the capital of France. Describe Paris in JSON.",
        "format": SCHEMA, "wait_s": 90})
    assert response.status_code == 200, response.text + logs(real_stack)
    job = response.json()
    assert job["status"] == "succeeded", job
    assert job["result"]["schema_valid"] is True
    jsonschema.validate(job["result"]["json"], SCHEMA)
