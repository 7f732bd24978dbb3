"""An operator's day on one `mes up --simulated`: a missing model found and pulled, the CLI at a
terminal and in a pipe, then kill -9 of Redis, a worker, beat and the engine, each restarted
while the rest stays up, and a worker whose pool children die as it starts.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from mes.bench.processes import Proc, wait_until
from mes.stack import free_port
from tests.conftest import KEYS, MODELS_FILE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = {"Authorization": "Bearer alice-secret-1"}
FINAL = ("succeeded", "failed", "cancelled", "expired")
MES = os.path.join(os.path.dirname(sys.executable), "mes")


@dataclass
class Up:
    """One running `mes up` and what a test needs to reach and kill its processes."""

    proc: Proc
    web: str
    engine: str
    env: dict[str, str]

    def pids(self, name: str) -> list[int]:
        """Return the pids of every start of a process, oldest first."""
        return [int(pid) for pid in re.findall(rf"\| {name} started \(pid=(\d+)\)",
                                               self.proc.log(tail=None))]

    def ready(self) -> bool:
        return requests.get(self.web + "/ready", timeout=5).status_code == 200

    def kill(self, name: str) -> int:
        """Kill -9 the current run of a process and wait for the supervisor to start it again."""
        starts = self.pids(name)
        os.kill(starts[-1], signal.SIGKILL)
        wait_until(lambda: len(self.pids(name)) > len(starts), 30, f"{name} restarted", self.proc)
        return starts[-1]

    def submit(self, n: int, prefix: str, model: str = "smollm2:135m") -> list[str]:
        ids = []
        for i in range(n):
            response = requests.post(self.web + "/v1/jobs", headers=ALICE, timeout=30, json={
                "model": model, "prompt": f"{prefix} {i}", "timeout_s": 120})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    def settle(self, ids: list[str]) -> dict[str, str]:
        """Return each job's status once every job is final (or the patience runs out)."""
        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 150
        for job_id in ids:
            while time.monotonic() < deadline:
                job = requests.get(f"{self.web}/v1/jobs/{job_id}?wait=10", headers=ALICE,
                                   timeout=30).json()
                statuses[job_id] = job["status"]
                if job["status"] in FINAL:
                    break
        return statuses

    def cli(self, *argv: str, key: str = "root-secret-4444") -> subprocess.CompletedProcess:
        """Run the `mes` command with stdout in a pipe, as a script would."""
        return subprocess.run([MES, *argv], env={**self.env, "MES_URL": self.web,
                                                 "MES_API_KEY": key},
                              capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    tmp: Path = tmp_path_factory.mktemp("operator")
    ports = {"web": free_port(), "engine": free_port(), "flower": free_port()}
    env = {**os.environ, "MES_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",  # none there
           "MES_MODELS_FILE": str(MODELS_FILE), "MES_STATE_DIR": str(tmp / "state"),
           "MES_API_KEYS": KEYS, "MES_WORKER_HEARTBEAT_S": "1", "MES_LEASE_TTL_S": "3",
           "MES_REAPER_INTERVAL_S": "1", "MES_BACKEND_MAX_RETRIES": "8",
           "MES_BREAKER_COOLDOWN_S": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("MES_OLLAMA_URL", None)
    proc = Proc("mes-up", [MES, "up", "--simulated", "--port", str(ports["web"]),
                           "--engine-port", str(ports["engine"]),
                           "--flower-port", str(ports["flower"]), "--web-workers", "1"],
                env, tmp)
    stack = Up(proc, f"http://127.0.0.1:{ports['web']}", f"http://127.0.0.1:{ports['engine']}",
               env)
    try:
        wait_until(stack.ready, 120, "mes up /ready", proc)
        yield stack
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.popen.wait(60)
        proc.stop()
    assert "stopped" in proc.log(tail=None)


def test_a_missing_model_is_reported_then_pulled_with_progress(up):
    ready = requests.get(up.web + "/ready", timeout=10).json()
    assert ready["missing_models"] == ["ghost:1b"]  # the simulated engine lacks it
    status = up.cli("status")
    assert status.returncode == 0 and json.loads(status.stdout)["missing_models"] == ["ghost:1b"]
    pulled = up.cli("models", "pull", "ghost:1b", key="ops-secret-333")
    assert pulled.returncode == 0, pulled.stderr
    operation = json.loads(pulled.stdout)
    assert operation["kind"] == "pull" and operation["status"] == "succeeded"
    progress = operation["progress"]
    assert progress["lines"][0] == "pulling manifest" and progress["lines"][-1] == "success"
    assert progress["total"] > 0 and progress["completed"] == progress["total"]
    assert "success" in pulled.stderr  # the progress lines, one per status
    models = json.loads(up.cli("models").stdout)["models"]
    assert {m["id"]: m["available_on_backend"] for m in models}["ghost:1b"] is True
    assert requests.get(up.web + "/ready", timeout=10).json()["missing_models"] == []
    assert set(up.settle(up.submit(1, "ghost", model="ghost:1b")).values()) == {"succeeded"}


def test_the_cli_draws_a_table_at_a_terminal_and_prints_json_in_a_pipe(up):
    main, secondary = pty.openpty()
    env = {**up.env, "MES_URL": up.web, "MES_API_KEY": "root-secret-4444", "COLUMNS": "160"}
    code = subprocess.run([MES, "models"], env=env, stdout=secondary, stderr=subprocess.PIPE,
                          timeout=60).returncode
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main)
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode())
    assert code == 0 and "ON BACKEND" in text and "ghost:1b" in text
    assert not text.lstrip().startswith("{")
    piped = up.cli("models")
    assert piped.returncode == 0 and set(json.loads(piped.stdout)) == {"models"}


def test_redis_killed_with_queued_jobs_comes_back_with_every_one(up):
    requests.post(up.engine + "/mes-engine/faults", json={"hang": True}, timeout=5)
    try:
        ids = up.submit(8, "redis-kill")

        def two_running():
            jobs = [requests.get(f"{up.web}/v1/jobs/{i}", headers=ALICE, timeout=10).json()
                    for i in ids]
            return sum(job["status"] == "running" for job in jobs) == 2
        wait_until(two_running, 30, "two running jobs, six queued")
        up.kill("redis")
        wait_until(up.ready, 60, "/ready after the Redis restart", up.proc)
    finally:
        requests.delete(up.engine + "/mes-engine/faults", timeout=5)
    assert "redis exited unexpectedly (exit code -9 (SIGKILL), attempt 1)" in up.proc.log(tail=None)
    assert set(up.settle(ids).values()) == {"succeeded"}


@pytest.mark.parametrize("name", ["worker_smollm", "beat", "engine"])
def test_a_killed_process_comes_back_and_jobs_around_it_succeed(up, name):
    web_starts = up.pids("web")
    before = up.submit(3, f"before-{name}")
    killed = up.kill(name)
    wait_until(up.ready, 60, f"/ready after {name} came back", up.proc)
    after = up.submit(3, f"after-{name}")
    assert set(up.settle(before + after).values()) == {"succeeded"}
    assert up.pids("web") == web_starts  # nothing else was stopped
    assert f"{name} exited unexpectedly (exit code -9 (SIGKILL)" in up.proc.log(tail=None)
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE


def test_a_worker_whose_pool_children_die_at_start_leaves_the_stack_up(up):
    web_starts = up.pids("web")
    up.kill("worker_phi")  # a fresh start, whose pool we then kill as it forms
    killed: set[int] = set()
    until = time.monotonic() + 8
    while time.monotonic() < until:
        try:
            main = psutil.Process(up.pids("worker_phi")[-1])
            for child in main.children():
                if child.pid not in killed:
                    child.kill()
                    killed.add(child.pid)
        except psutil.NoSuchProcess:
            pass  # the main process gave up: the supervisor starts another
        time.sleep(0.05)
    assert killed
    wait_until(up.ready, 90, "/ready once the phi worker stays up", up.proc)
    assert up.pids("web") == web_starts
    assert set(up.settle(up.submit(2, "phi", model="phi3:mini")).values()) == {"succeeded"}
