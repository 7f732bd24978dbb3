"""Run `mes up --simulated` as a user would, with no Redis answering, and stop it with Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sys

import pytest
import requests

from mes.stack import free_port, port_is_free
from mes.bench.processes import Proc, wait_until
from tests.conftest import MODELS_FILE

pytestmark = pytest.mark.integration


def test_mes_up_runs_the_stack_and_stops_cleanly(tmp_path):
    ports = {"web": free_port(), "engine": free_port(), "flower": free_port()}
    env = {**os.environ, "MES_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing there
           "MES_MODELS_FILE": str(MODELS_FILE), "MES_STATE_DIR": str(tmp_path / "state"),
           "MES_WORKER_HEARTBEAT_S": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("MES_OLLAMA_URL", None)
    env.pop("MES_API_KEYS", None)
    mes = os.path.join(os.path.dirname(sys.executable), "mes")
    proc = Proc("mes-up", [mes, "up", "--simulated", "--port", str(ports["web"]),
                           "--engine-port", str(ports["engine"]), "--flower-port", str(ports["flower"]),
                           "--web-workers", "1"], env, tmp_path)
    web = f"http://127.0.0.1:{ports['web']}"
    try:
        wait_until(lambda: requests.get(web + "/ready", timeout=2).status_code == 200, 90,
                   "mes up /ready", proc)
        response = requests.post(web + "/v1/inference", timeout=60,
                                 headers={"Authorization": "Bearer mes-dev-key-change-me"},
                                 json={"model": "smollm2:135m", "prompt": "What is the capital of France?"})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded" and response.json()["result"]["text"]
        # Flower is never open: `mes up` made a login for this run and printed it once.
        flower = f"http://127.0.0.1:{ports['flower']}/"
        login = re.search(r"Flower's login for this run is (\S+):(\S+)", proc.log(tail=None))
        assert requests.get(flower, timeout=5).status_code == 401
        assert requests.get(flower, auth=login.groups(), timeout=5).status_code == 200
        assert "starting an embedded Redis" in proc.log(tail=None)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
        proc.popen.wait(30)
        proc.stop()
    assert proc.popen.returncode is not None
    for port in ports.values():
        assert port_is_free(port), f"port {port} still in use after Ctrl-C"
