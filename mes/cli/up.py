"""Run `mes up`: the whole local stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlparse

from mes.cli.common import EXIT_ERROR, Context
from mes.errors import ConfigError
from mes.keys import EXAMPLE_KEY
from mes.registry import ModelRegistry
from mes.stack import (StackOptions, aof_path, find_redis_server, free_port, port_is_free,
                       process_table, redis_answers, redis_command)

DEV_KEY = EXAMPLE_KEY


def add_parser(commands) -> None:
    """Register `mes up` on `commands`."""
    up = commands.add_parser("up", help="run the whole service locally, restarting what crashes (Ctrl-C stops it)")
    up.add_argument("--simulated", action="store_true",
                    help="use the simulated engine instead of a real model")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8001)
    up.add_argument("--web-workers", type=int, default=2)
    up.add_argument("--engine-port", type=int, default=11434)
    up.add_argument("--flower-port", type=int, default=5555)
    up.set_defaults(run=run_up)


def run_up(args: argparse.Namespace, context: Context) -> int:
    """Run the stack the arguments describe; report bad settings on stderr as exit code 2."""
    options = StackOptions(host=args.host, port=args.port, simulated=args.simulated,
                           web_workers=args.web_workers, engine_port=args.engine_port,
                           flower_port=args.flower_port)
    try:
        return run_stack(options, dict(context.environ))
    except ConfigError as exc:
        context.stderr.write(f"mes: {exc}\n")
        return EXIT_ERROR


def check_stored_keys(settings, *, embedded_redis: bool) -> None:
    """Refuse to start in production when no key could authenticate (settings or Redis)."""
    from mes.store.apikeys import RedisKeyStore, check_keys_exist
    from mes.services import connect_redis
    if embedded_redis and not settings.api_keys:
        raise ConfigError(["no API keys: MES_API_KEYS is empty and a new embedded Redis holds "
                           "none (MES_ENV=production refuses to start without one)"])
    check_keys_exist(settings, RedisKeyStore(connect_redis(settings.redis_url)))


def run_stack(options: StackOptions, environ: dict[str, str]) -> int:
    """Run every process in the foreground, restarting any that exits, until Ctrl-C."""
    from mes.cli.supervisor import Supervisor
    from mes.settings import Settings

    env = dict(environ)
    # Run celery and gunicorn from the same environment as this `mes`, activated or not.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    state_dir = Path(env.get("MES_STATE_DIR", "run")).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor()
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
        supervisor.add("redis", redis_command(binary, port, state_dir), stop_last=True)
        print(f"mes up: starting an embedded Redis at {redis_url}; it keeps an append-only "
              f"file in {aof_path(binary, state_dir)} (fsync every second), so a restart keeps "
              f"every accepted job. To start afresh, stop mes up and delete it.",
              file=sys.stderr)
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
        supervisor.add(name, command, env=env, cwd=os.getcwd())
    return supervisor.run()
