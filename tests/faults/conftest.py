"""Give each fault test its own stack: redis-server, engine, workers, beat and web, as processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from mes.heartbeat import heartbeat_key
from mes.launcher import free_port, web_command, worker_command
from tests.conftest import KEYS, MODELS_FILE
from tests.procs import Proc, start_engine, start_redis, wait_until

pytestmark = pytest.mark.faults
ALICE = {"Authorization": "Bearer alice-secret-1"}
FINAL = ("succeeded", "failed", "cancelled", "expired")
MODEL = "smollm2:135m"


@dataclass
class FaultStack:
    """Start and kill the parts of one private MES stack."""

    log_dir: Path
    redis_port: int = field(default_factory=free_port)
    engine_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    redis: Proc | None = None
    engine: Proc | None = None
    web_url: str = ""
    engine_args: tuple[str, ...] = ("--token-ms", "2", "--load-ms", "5", "--num-parallel", "8")

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update({"MES_REDIS_URL": self.redis_url, "MES_OLLAMA_URL": self.engine_url,
                    "MES_MODELS_FILE": str(MODELS_FILE), "MES_API_KEYS": KEYS,
                    "MES_WORKER_HEARTBEAT_S": "1", "MES_LEASE_TTL_S": "3",
                    "MES_REAPER_INTERVAL_S": "1", "MES_BACKEND_MAX_RETRIES": "8",
                    "MES_BREAKER_THRESHOLD": "5", "MES_BREAKER_COOLDOWN_S": "2",
                    "MES_TASK_TIME_LIMIT_S": "180", "MES_TASK_SOFT_TIME_LIMIT_S": "170",
                    "PYTHONUNBUFFERED": "1"})
        env.update(extra)
        return env

    def start_redis(self, appendonly: bool = False) -> None:
        self.redis, _ = start_redis(self.log_dir, appendonly=appendonly, port=self.redis_port)

    def restart_redis(self, appendonly: bool = True) -> None:
        self.redis.stop(signal.SIGTERM)  # SHUTDOWN flushes the AOF
        self.start_redis(appendonly=appendonly)

    def start_engine(self) -> None:
        port_args = ("--port", str(self.engine_port))
        self.engine = Proc(f"engine-{time.monotonic_ns()}",
                           [sys.executable, "-m", "mes.engine", "--simulated", "--host", "127.0.0.1",
                            *port_args, *self.engine_args], self.env(), self.log_dir)
        wait_until(lambda: requests.get(self.engine_url + "/api/version", timeout=1).ok, 20,
                   "engine", self.engine)

    def start_worker(self, name: str = "w1", concurrency: int = 2) -> Proc:
        proc = Proc(f"worker-{name}-{time.monotonic_ns()}",
                    worker_command("mes.smollm", name, concurrency), self.env(), self.log_dir)
        client = redis_lib.Redis.from_url(self.redis_url)
        wait_until(lambda: client.exists(heartbeat_key("mes.smollm", f"{name}@{os.uname().nodename}")),
                   60, f"worker {name}", proc)
        self.procs.append(proc)
        return proc

    def start_beat(self) -> Proc:
        proc = Proc("beat", f"celery -A workers.entry beat --schedule {self.log_dir}/beat-schedule",
                    self.env(), self.log_dir)
        self.procs.append(proc)
        return proc

    def start_web(self) -> None:
        port = free_port()
        proc = Proc("web", web_command("127.0.0.1", port, 1), self.env(), self.log_dir)
        self.web_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(self.web_url + "/health", timeout=1).ok, 30, "web", proc)
        self.procs.append(proc)

    def submit(self, n: int, prefix: str = "job", **body) -> list[str]:
        ids = []
        for i in range(n):
            response = requests.post(self.web_url + "/v1/jobs", headers=ALICE, timeout=10,
                                     json={"model": MODEL, "prompt": f"{prefix} {i}", "timeout_s": 120, **body})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    def jobs(self, ids: list[str]) -> dict[str, dict]:
        client = redis_lib.Redis.from_url(self.redis_url, decode_responses=True)
        pipe = client.pipeline()
        for job_id in ids:
            pipe.hget(f"mes:job:{job_id}", "data")
        return {job_id: json.loads(raw) if raw else None for job_id, raw in zip(ids, pipe.execute())}

    def settle(self, ids: list[str], limit_s: float) -> dict[str, dict]:
        """Wait until every job is final or the limit passes; return the records."""
        deadline = time.monotonic() + limit_s
        while True:
            jobs = self.jobs(ids)
            if all(job and job["status"] in FINAL for job in jobs.values()) or time.monotonic() > deadline:
                return jobs
            time.sleep(0.2)

    def engine_stats(self) -> dict:
        return requests.get(self.engine_url + "/mes-engine/stats", timeout=5).json()["models"][MODEL]

    def lease_pid(self, job_id: str) -> int | None:
        token = redis_lib.Redis.from_url(self.redis_url, decode_responses=True).get(f"mes:lease:{job_id}")
        return int(token.split(":")[1]) if token else None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for proc in (self.engine, self.redis):
            if proc is not None:
                proc.stop()


def report(name: str, jobs: dict[str, dict], completed_generations: int, **extra) -> dict:
    """Print the suite's figures for one test and return them."""
    statuses = Counter(job["status"] if job else "lost" for job in jobs.values())
    failed = Counter(job["error"]["code"] for job in jobs.values() if job and job["status"] == "failed")
    not_final = sum(1 for job in jobs.values() if not job or job["status"] not in FINAL)
    reruns = sum(job["lost_runs"] for job in jobs.values() if job)
    figures = {"submitted": len(jobs), "succeeded": statuses.get("succeeded", 0),
               "failed_by_code": dict(failed), "lost": not_final,
               "executed_twice": completed_generations - statuses.get("succeeded", 0),
               "reruns_after_worker_death": reruns, **extra}
    if not_final:
        figures["not_final"] = {job_id: (job or {}).get("status") for job_id, job in jobs.items()
                                if not job or job["status"] not in FINAL}
    print(f"\nFAULT {name}: " + json.dumps(figures))
    return figures


@pytest.fixture
def stack(tmp_path):
    s = FaultStack(tmp_path)
    yield s
    s.stop()
