"""Run a private MES stack as processes: redis-server, engine, workers, beat and web."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_lib
import requests

from mes.store.health import worker_alive
from mes.stack import free_port, web_command, worker_command
from tests.conftest import KEYS, MODELS_FILE
from tests.procs import Proc, start_redis, wait_until

ALICE = {"Authorization": "Bearer alice-secret-1"}
FINAL = ("succeeded", "failed", "cancelled", "expired")
MODEL = "smollm2:135m"


@dataclass
class PrivateStack:
    """Start and kill the parts of one private MES stack."""

    log_dir: Path
    redis_port: int = field(default_factory=free_port)
    engine_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    redis: Proc | None = None
    engine: Proc | None = None
    web_url: str = ""
    engine_args: tuple[str, ...] = ("--token-ms", "2", "--load-ms", "5", "--num-parallel", "8")
    models_file: Path = MODELS_FILE
    extra_env: dict[str, str] = field(default_factory=dict)

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
                    "MES_MODELS_FILE": str(self.models_file), "MES_API_KEYS": KEYS,
                    "MES_WORKER_HEARTBEAT_S": "1", "MES_LEASE_TTL_S": "3",
                    "MES_REAPER_INTERVAL_S": "1", "MES_BACKEND_MAX_RETRIES": "8",
                    "MES_BREAKER_THRESHOLD": "5", "MES_BREAKER_COOLDOWN_S": "2",
                    "MES_TASK_TIME_LIMIT_S": "180", "MES_TASK_SOFT_TIME_LIMIT_S": "170",
                    "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
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

    def start_worker(self, name: str = "w1", concurrency: int = 2, queue: str = "mes.smollm") -> Proc:
        proc = Proc(f"worker-{name}-{time.monotonic_ns()}",
                    worker_command(queue, name, concurrency), self.env(), self.log_dir)
        client = redis_lib.Redis.from_url(self.redis_url)
        wait_until(lambda: worker_alive(client, queue, f"{name}@{os.uname().nodename}"),
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
                                     json={"model": MODEL, "prompt": f"{prefix} {i}", "timeout_s": 120,
                                           **body})
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

    def engine_stats(self, model: str = MODEL) -> dict:
        return requests.get(self.engine_url + "/mes-engine/stats", timeout=5).json()["models"][model]

    def lease_pid(self, job_id: str) -> int | None:
        token = redis_lib.Redis.from_url(self.redis_url, decode_responses=True).get(f"mes:lease:{job_id}")
        return int(token.split(":")[1]) if token else None

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        for proc in (self.engine, self.redis):
            if proc is not None:
                proc.stop()


