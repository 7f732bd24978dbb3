"""Run a private MES stack for a test: the bench's launcher with the test keys, plus readers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from mes.bench.stack import Stack
from mes.jobs import FINAL_STATES
from mes.store import names
from tests.conftest import KEYS, MODELS_FILE

ALICE = {"Authorization": "Bearer alice-secret-1"}
FINAL = {state.value for state in FINAL_STATES}
MODEL = "smollm2:135m"
# Short leases, a quick reaper and a quick breaker: faults heal within a test's patience.
FAULT_SETTINGS = {"MES_LEASE_TTL_S": "3", "MES_REAPER_INTERVAL_S": "1",
                  "MES_BACKEND_MAX_RETRIES": "8", "MES_BREAKER_THRESHOLD": "5",
                  "MES_BREAKER_COOLDOWN_S": "2", "MES_TASK_TIME_LIMIT_S": "180",
                  "MES_TASK_SOFT_TIME_LIMIT_S": "170"}


class PrivateStack(Stack):
    """Start a simulated stack on the test models and keys; read its jobs straight from Redis."""

    def __init__(self, log_dir: Path, *,
                 engine_args: tuple[str, ...] = ("--token-ms", "2", "--load-ms", "5",
                                                 "--num-parallel", "8"),
                 settings: dict[str, str] = FAULT_SETTINGS, web_workers: int = 1):
        super().__init__(log_dir, MODELS_FILE, queue="mes.smollm",
                         settings={"MES_API_KEYS": KEYS, **settings}, engine_args=engine_args,
                         simulated=True, web_workers=web_workers)

    def start_all(self, workers: tuple[tuple[str, int, str], ...] = (("smollm", 2, "mes.smollm"),),
                  beat: bool = False) -> "PrivateStack":
        """Start Redis, the engine, the workers (name, concurrency, queue), beat if asked, the web."""
        self.start_redis()
        self.start_engine()
        for name, concurrency, queue in workers:
            self.start_worker(name, concurrency=concurrency, queue=queue)
        if beat:
            self.start_beat()
        self.start_web()
        return self

    def set_faults(self, **values) -> None:
        """Set engine faults (POST /mes-engine/faults)."""
        requests.post(self.engine_url + "/mes-engine/faults", json=values,
                      timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        """Clear every engine fault."""
        requests.delete(self.engine_url + "/mes-engine/faults", timeout=5)

    def submit(self, n: int, prefix: str = "job", **body) -> list[str]:
        """Submit n jobs as alice and return their ids."""
        ids = []
        for i in range(n):
            response = requests.post(self.web_url + "/v1/jobs", headers=ALICE, timeout=10,
                                     json={"model": MODEL, "prompt": f"{prefix} {i}", "timeout_s": 120,
                                           **body})
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])
        return ids

    def jobs(self, ids: list[str]) -> dict[str, dict]:
        """Return the stored records of the jobs (None for one that is missing)."""
        pipe = self.redis().pipeline()
        for job_id in ids:
            pipe.hget(names.job(job_id), "data")
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
        """Return the engine's counters for one model."""
        return requests.get(self.engine_url + "/mes-engine/stats", timeout=5).json()["models"][model]

    def lease_pid(self, job_id: str) -> int | None:
        """Return the pid of the process holding the job's lease, if one does."""
        token = self.redis().get(names.lease(job_id))
        return int(token.split(":")[1]) if token else None
