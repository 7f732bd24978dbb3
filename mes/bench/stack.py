"""Start a private MES stack (Redis, engines, workers, beat and the web) for a benchmark or a test."""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
from pathlib import Path

import redis as redis_lib
import requests

from mes.store.health import worker_alive
from mes.stack import free_port, web_command, worker_command
from mes.bench.processes import Proc, start_redis, wait_until

FAMILY = "bench"
QUEUE = f"mes.{FAMILY}"


class Stack:
    """Own every process of one private stack; stop() ends them all.

    Workers and the web run the very commands `mes up` runs (mes.stack), and every process gets
    the stack's settings in its environment. Redis and the engine keep their ports for the
    stack's life, so a test can stop one and start it again behind the same URL.
    """

    def __init__(self, log_dir: Path, models_file: Path, *, queue: str,
                 settings: dict[str, str], concurrency: int = 2,
                 engine_args: tuple[str, ...] = (), simulated: bool = False,
                 web_workers: int = 2):
        self.log_dir = log_dir
        self.models_file = models_file
        self.queue = queue                # what start_worker consumes unless told otherwise
        self.settings = settings          # MES_* settings of every process
        self.extra_env: dict[str, str] = {}  # more settings on top, for one run
        self.concurrency = concurrency
        self.engine_args = engine_args
        self.simulated = simulated
        self.web_workers = web_workers
        self.redis_port = free_port()
        self.engine_port = free_port()
        self.redis_server: Proc | None = None
        self.engines: list[Proc] = []
        self.procs: list[Proc] = []       # MES's own: workers, beat and web, in start order
        self.web_url = ""

    @property
    def redis_url(self) -> str:
        """Return the URL of the stack's Redis."""
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def engine_url(self) -> str:
        """Return the URL of the first engine, which workers use unless told otherwise."""
        return f"http://127.0.0.1:{self.engine_port}"

    @property
    def engine(self) -> Proc | None:
        """Return the engine started last."""
        return self.engines[-1] if self.engines else None

    def env(self, **extra: str) -> dict[str, str]:
        """Return the environment every process of this stack runs with."""
        env = dict(os.environ)
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        env.update({"MES_REDIS_URL": self.redis_url, "MES_OLLAMA_URL": self.engine_url,
                    "MES_MODELS_FILE": str(self.models_file), "MES_WORKER_HEARTBEAT_S": "1",
                    "PYTHONUNBUFFERED": "1", **self.settings, **self.extra_env, **extra})
        return env

    def redis(self) -> redis_lib.Redis:
        """Return a client for the stack's Redis."""
        return redis_lib.Redis.from_url(self.redis_url, decode_responses=True)

    def start_redis(self, appendonly: bool = False) -> None:
        """Start redis-server on the stack's Redis port."""
        self.redis_server, _ = start_redis(self.log_dir, appendonly=appendonly, port=self.redis_port)

    def restart_redis(self, appendonly: bool = True) -> None:
        """Stop Redis cleanly (SHUTDOWN flushes the AOF) and start it again on the same port."""
        self.redis_server.stop()
        self.start_redis(appendonly=appendonly)

    def start_engine(self) -> str:
        """Start an engine and return its URL.

        With no engine running it listens on engine_port, so one started after a kill takes
        over the URL the workers know; beside a running one (a scale-out) on a free port.
        """
        port = free_port() if any(proc.alive() for proc in self.engines) else self.engine_port
        command = [sys.executable, "-m", "mes.engine", "--host", "127.0.0.1", "--port", str(port),
                   *(["--simulated"] if self.simulated else []), *self.engine_args]
        proc = Proc(f"engine-{len(self.engines) + 1}", command, self.env(), self.log_dir)
        self.engines.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(url + "/api/version", timeout=1).ok, 120, "engine", proc)
        return url

    def start_worker(self, name: str, engine_url: str = "", *, concurrency: int | None = None,
                     queue: str | None = None) -> Proc:
        """Start a Celery worker and wait for its first heartbeat."""
        queue = queue or self.queue
        proc = Proc(f"worker-{name}", worker_command(queue, name, concurrency or self.concurrency),
                    self.env(MES_OLLAMA_URL=engine_url or self.engine_url), self.log_dir)
        self.procs.append(proc)
        client = self.redis()
        wait_until(lambda: worker_alive(client, queue, f"{name}@{os.uname().nodename}"),
                   60, f"worker {name}", proc)
        return proc

    def start_beat(self) -> Proc:
        """Start Celery beat (the reaper and the warm-ups)."""
        proc = Proc("beat", ["celery", "-A", "workers.entry", "beat", "--schedule",
                             str(self.log_dir / "beat-schedule")], self.env(), self.log_dir)
        self.procs.append(proc)
        return proc

    def start_web(self) -> None:
        """Start gunicorn on a free port and wait until it answers /health."""
        port = free_port()
        proc = Proc("web", web_command("127.0.0.1", port, self.web_workers), self.env(),
                    self.log_dir)
        self.procs.append(proc)
        self.web_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: requests.get(self.web_url + "/health", timeout=1).ok, 60, "web", proc)

    def stop(self) -> None:
        """Stop every process, newest first: MES's own, then the engines, then Redis."""
        for proc in [*reversed(self.procs), *reversed(self.engines), self.redis_server]:
            if proc is not None:
                proc.stop()

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class BenchStack(Stack):
    """Run a benchmark's stack: one family, "bench", holding the given models, and an admin key."""

    def __init__(self, models: list[dict], concurrency: int = 2,
                 engine_args: tuple[str, ...] = ("--simulated", "--token-ms", "0", "--prompt-ms",
                                                 "0", "--load-ms", "0", "--num-parallel", "64"),
                 web_workers: int = 2):
        log_dir = Path(tempfile.mkdtemp(prefix="mes-bench-"))
        models_file = log_dir / "models.json"
        models_file.write_text(json.dumps({
            "families": {FAMILY: {"concurrency": concurrency}},
            "models": [{"family": FAMILY, "max_queue": 1_000_000, **m} for m in models]}))
        self.key = "bench-" + secrets.token_urlsafe(16)
        super().__init__(log_dir, models_file, queue=QUEUE, concurrency=concurrency,
                         engine_args=engine_args, web_workers=web_workers,
                         settings={"MES_API_KEYS": f"bench:{self.key}:admin",
                                   "MES_LOG_LEVEL": "warning"})

    @property
    def headers(self) -> dict[str, str]:
        """Return the bench key's auth header."""
        return {"Authorization": f"Bearer {self.key}"}
