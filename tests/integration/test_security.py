"""Security on real processes: `mes keys` against gunicorn, shared rate limits, clean logs,
production refusing to start, and Flower behind its password."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from mes.keys import EXAMPLE_KEY
from mes.stack import StackOptions, free_port, process_table, web_command
from mes.registry import ModelRegistry
from mes.bench.processes import Proc, wait_until
from tests.conftest import MODELS_FILE

pytestmark = pytest.mark.integration

MES = str(Path(sys.executable).with_name("mes"))
BODY = {"model": "smollm2:135m", "prompt": "What is the capital of France?"}


def mes_keys(env, *argv) -> dict:
    result = subprocess.run([MES, "keys", *argv], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def bin_env(stack_env):
    return {**stack_env, "PATH": os.path.dirname(sys.executable) + os.pathsep + stack_env["PATH"]}


def start_web(name, env, log_dir) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(name, web_command("127.0.0.1", port, 2), env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url + "/health", timeout=1).ok, 30, name, proc)
    return proc, url


def test_a_key_from_mes_keys_works_until_revoked_on_every_web_worker(web, bin_env, log_dir):
    name = f"ci-{secrets.token_hex(3)}"
    secret = mes_keys(bin_env, "create", "--name", name, "--scopes", "jobs")["key"]
    job = requests.post(web + "/v1/inference", json={**BODY, "wait_s": 30}, headers=bearer(secret),
                        timeout=60)
    assert job.status_code == 200 and job.json()["status"] == "succeeded", job.text
    assert requests.get(web + "/v1/status", headers=bearer(secret), timeout=10).status_code == 403
    listed = mes_keys(bin_env, "list")["keys"]
    assert name in {key["name"] for key in listed} and secret not in json.dumps(listed)
    mes_keys(bin_env, "revoke", name)
    # Both gunicorn workers refuse it at once: there is no cache to expire.
    for _ in range(6):
        answer = requests.get(web + f"/v1/jobs/{job.json()['id']}", headers=bearer(secret),
                              timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"
    log = (log_dir / "web.log").read_text(errors="replace")
    assert name in log and secret not in log and secret[4:] not in log


def test_rate_limits_are_shared_by_every_web_process(bin_env, log_dir):
    name = f"slow-{secrets.token_hex(3)}"
    env = {**bin_env, "MES_RATE_LIMITS": f"default=1000/minute;{name}=6/minute"}
    secret = mes_keys(env, "create", "--name", name, "--scopes", "jobs")["key"]
    one, url_one = start_web("web-limited-1", env, log_dir)
    two, url_two = start_web("web-limited-2", env, log_dir)
    try:
        codes = [requests.get(url + "/v1/models", headers=bearer(secret), timeout=10)
                 for url in [url_one, url_two] * 4]
        assert [c.status_code for c in codes] == [200] * 6 + [429] * 2
        limited = codes[-1]
        assert limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert requests.get(url_one + "/health", timeout=10).status_code == 200
    finally:
        one.stop()
        two.stop()


@pytest.mark.parametrize("changes,words", [
    ({"MES_API_KEYS": ""}, "no API keys"),
    ({"MES_API_KEYS": f"dev:{EXAMPLE_KEY}:admin"}, "example key"),
    ({"MES_FLOWER_BASIC_AUTH": ""}, "MES_FLOWER_BASIC_AUTH"),
])
def test_production_refuses_to_start_the_web_or_a_worker(bin_env, log_dir, changes, words,
                                                         tmp_path):
    # A fresh Redis database: no stored keys there.
    redis_url = bin_env["MES_REDIS_URL"].rsplit("/", 1)[0] + "/7"
    env = {**bin_env, "MES_ENV": "production", "MES_REDIS_URL": redis_url,
           "MES_FLOWER_BASIC_AUTH": "ops:a-long-password", **changes}
    web = subprocess.run(["gunicorn", "-w", "1", "-b", f"127.0.0.1:{free_port()}",
                          "web.app:create_app()"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert web.returncode != 0 and words in web.stderr + web.stdout
    if "no API keys" not in words:  # workers need no key; their settings check the rest
        worker = subprocess.run(["celery", "-A", "workers.entry", "worker", "-Q", "mes.smollm",
                                 "-c", "1"], env=env, capture_output=True, text=True, timeout=60)
        assert worker.returncode != 0 and words in worker.stderr + worker.stdout


def test_flower_answers_only_with_its_password(bin_env, log_dir, tmp_path):
    port = free_port()
    password = secrets.token_urlsafe(12)
    env = {**bin_env, "MES_FLOWER_BASIC_AUTH": f"ops:{password}"}
    command = process_table(ModelRegistry.from_file(MODELS_FILE),
                            StackOptions(flower_port=port))["flower"]
    flower = Proc("flower", ["/bin/sh", "-c", command], env, log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/healthcheck", timeout=1).ok, 60, "flower", flower)
        assert requests.get(url + "/", timeout=5).status_code == 401
        assert requests.get(url + "/", auth=("ops", "wrong-password"), timeout=5).status_code == 401
        assert requests.get(url + "/", auth=("ops", password), timeout=5).status_code == 200
    finally:
        flower.stop()
