"""/ready follows the stack: a stopped family worker or a stopped Redis turns it 503."""

from __future__ import annotations

import signal

import pytest
import requests

from mes.bench.processes import wait_until
from tests.support.stack import PrivateStack

pytestmark = pytest.mark.integration


def ready(stack):
    response = requests.get(stack.web_url + "/ready", timeout=10)
    return response.status_code, response.json()


def test_ready_turns_503_when_a_family_worker_or_redis_stops(tmp_path):
    stack = PrivateStack(tmp_path)
    try:
        stack.start_redis()
        stack.start_engine()
        smollm = stack.start_worker("smollm", concurrency=1)
        stack.start_worker("phi", concurrency=1, queue="mes.phi")
        stack.start_web()
        wait_until(lambda: ready(stack)[0] == 200, 30, "ready")
        smollm.stop(signal.SIGTERM)  # a clean stop removes its heartbeat at once
        status, body = ready(stack)
        assert status == 503 and body["workers"] == {"smollm": 0, "phi": 1}
        stack.start_worker("smollm2", concurrency=1)
        wait_until(lambda: ready(stack)[0] == 200, 30, "ready again")
        stack.redis_server.stop(signal.SIGTERM)
        status, body = ready(stack)
        assert status == 503 and body["redis"].startswith("down")
    finally:
        stack.stop()


def test_ready_turns_503_when_a_killed_worker_stops_beating(tmp_path):
    stack = PrivateStack(tmp_path)
    try:
        stack.start_redis()
        stack.start_engine()
        stack.start_worker("smollm", concurrency=1)
        stack.start_worker("phi", concurrency=1, queue="mes.phi")
        stack.start_web()
        wait_until(lambda: ready(stack)[0] == 200, 30, "ready")
        stack.procs[0].stop(signal.SIGKILL)  # no goodbye: its heartbeat key must expire
        wait_until(lambda: ready(stack)[0] == 503, 15, "503 after three missed beats")
        assert ready(stack)[1]["workers"]["smollm"] == 0
    finally:
        stack.stop()
