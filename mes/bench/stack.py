"""Start a private MES stack for a benchmark: Redis, engines, worker groups and the web."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_lib
import requests

from mes.store.health import worker_alive
from mes.stack import free_port, web_command, worker_command
from mes.bench.processes import Proc, start_redis, wait_until

FAMILY = "bench"
QUEUE = f"mes.{FAMILY}"


@dataclass
class BenchStack:
    """Own every process of one benchmark stack; stop() ends them all."""

    models: list[dict]
    concurrency: int = 2
    engine_args: tuple[str, ...] = ("--simulated", "--token-ms", "0", "--prompt-ms", "0",
                                    "--load-ms", "0", "--num-parallel", "64")
    web_workers: int = 2
    env_extra: dict[str, str] = field(default_factory=dict)
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mes-bench-")))
    procs: list[Proc] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    workers: list[Proc] = field(default_factory=list)
    redis_url: str = ""
    web_url: str = ""
    key: str = field(default_factory=lambda: "bench-" + secrets.token_urlsafe(16))

    def __post_init__(self) -> None:
        self.models_file = self.log_dir / "models.json"
        self.models_file.write_text(json.dumps({
            "families": {FAMILY: {"concurrency": self.concurrency}},
            "models": [{"family": FAMILY, "max_queue": 1_000_000, **m} for m in self.models]}))

    def env(self, engine_url: str = "") -> dict[str, str]:
        """Return the environment every MES process of this stack runs with."""
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update({"MES_REDIS_URL": self.redis_url, "MES_MODELS_FILE": str(self.models_file),
                    "MES_API_KEYS": f"bench:{self.key}:admin", "MES_LOG_LEVEL": "warning",
                    "MES_WORKER_HEARTBEAT_S": "1", "PYTHONUNBUFFERED": "1",
                    "MES_OLLAMA_URL": engine_url or (self.engines[0] if self.engines else "")})
        env.update(self.env_extra)
        return env

    def start_redis(self) -> None:
        proc, self.redis_url = start_redis(self.log_dir)
        self.procs.append(proc)

    def start_engine(self) -> str:
        port = free_port()
        proc = Proc(f"engine-{port}", [sys.executable, "-m", "mes.engine", "--host", "127.0.0.1",
                                       "--port", str(port), *self.engine_args],
                    self.env(), self.log_dir)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(url + "/api/version", timeout=1).ok, 120, "engine", proc)
        self.engines.append(url)
        return url

    def start_worker(self, name: str, engine_url: str, concurrency: int | None = None) -> Proc:
        concurrency = concurrency or self.concurrency
        proc = Proc(f"worker-{name}", worker_command(QUEUE, name, concurrency),
                    self.env(engine_url), self.log_dir)
        self.procs.append(proc)
        self.workers.append(proc)
        client = redis_lib.Redis.from_url(self.redis_url)
        wait_until(lambda: worker_alive(client, QUEUE, f"{name}@{os.uname().nodename}"),
                   60, f"worker {name}", proc)
        return proc

    def start_web(self) -> None:
        port = free_port()
        proc = Proc("web", web_command("127.0.0.1", port, self.web_workers), self.env(),
                    self.log_dir)
        self.procs.append(proc)
        self.web_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(self.web_url + "/health", timeout=1).ok, 60, "web", proc)

    @property
    def headers(self) -> dict[str, str]:
        """Return the bench key's auth header."""
        return {"Authorization": f"Bearer {self.key}"}

    def redis(self) -> redis_lib.Redis:
        """Return a client for the stack's Redis."""
        return redis_lib.Redis.from_url(self.redis_url, decode_responses=True)

    def stop(self) -> None:
        """Stop every process, newest first."""
        for proc in reversed(self.procs):
            proc.stop()

    def __enter__(self) -> "BenchStack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
