"""Run the `mes` command: `mes up`, `mes engine`, `mes keys`, and API commands on top of MESClient.

API commands print JSON to stdout and progress to stderr. Exit codes: 0 success, 1 the job
failed, was cancelled or expired, 2 a usage or API error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, TextIO

from mes.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:8001"
EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2
PROGRESS_POLL_S = 2  # long polls short enough to refresh the elapsed time on a terminal


def _up(args: argparse.Namespace) -> int:
    from mes.cli.up import StackOptions, run_stack
    options = StackOptions(host=args.host, port=args.port, simulated=args.simulated,
                           web_workers=args.web_workers, engine_port=args.engine_port,
                           flower_port=args.flower_port)
    return run_stack(options, dict(os.environ))


class UsageError(Exception):
    """Report a bad command line that argparse could not catch."""


class Progress:
    """Show a job's status and elapsed time on stderr while waiting for it.

    On a terminal one line is rewritten in place; otherwise a line is written per change.
    """

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.tty = stream.isatty()
        self._last: str | None = None

    def __call__(self, job: dict[str, Any], elapsed_s: float) -> None:
        status = str(job.get("status"))
        position = job.get("queue_position")
        text = f"{job.get('id')} {status}" + (f" (#{position} in queue)" if position else "")
        if self.tty:
            self.stream.write(f"\r\033[K{text}  {elapsed_s:5.1f}s")
            if status in ("succeeded", "failed", "cancelled", "expired"):
                self.stream.write("\n")
        elif text != self._last:
            self.stream.write(f"{text} after {elapsed_s:.1f}s\n")
        self._last = text
        self.stream.flush()


def _read_json(path: str, what: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} from {path}: {exc}") from exc


def _client(args: argparse.Namespace, environ: Mapping[str, str]):
    from mes.client import MESClient
    key = args.key or environ.get("MES_API_KEY")
    if not key:
        raise UsageError("no API key: pass --key or set MES_API_KEY")
    return MESClient(args.url or environ.get("MES_URL") or DEFAULT_URL, key)


def _wait(client, job: dict[str, Any], args: argparse.Namespace, stderr: TextIO) -> dict:
    from mes.client import job_wait_budget_s
    progress = Progress(stderr)
    timeout_s = args.wait_timeout if args.wait_timeout is not None else job_wait_budget_s(job)
    return client.wait(job["id"], timeout_s, poll_s=PROGRESS_POLL_S if progress.tty else 10,
                       on_progress=progress)


def _job_exit(job: dict[str, Any]) -> int:
    return EXIT_JOB_FAILED if job.get("status") in ("failed", "cancelled", "expired") else EXIT_OK


def _submit(args, client, stdout, stderr) -> int:
    fields: dict[str, Any] = {"priority": args.priority, "system": args.system,
                              "timeout_s": args.timeout_s}
    if args.messages_file:
        fields["messages"] = _read_json(args.messages_file, "messages")
    if args.format_file:
        fields["format"] = _read_json(args.format_file, "the format")
    if args.option:
        fields["options"] = dict(_option(text) for text in args.option)
    if args.metadata:
        fields["metadata"] = _read_json(args.metadata, "metadata")
    job = client.submit(args.model, args.prompt, idempotency_key=args.idempotency_key, **fields)
    if args.wait:
        job = _wait(client, job, args, stderr)
    _print(job, stdout)
    return _job_exit(job) if args.wait else EXIT_OK


def _option(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--option wants NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw  # a bare word such as a stop string


def _jobs_get(args, client, stdout, stderr) -> int:
    job = client.get(args.job_id)
    if args.wait:
        job = _wait(client, job, args, stderr)
    _print(job, stdout)
    return _job_exit(job)


def _jobs_cancel(args, client, stdout, stderr) -> int:
    _print(client.cancel(args.job_id), stdout)
    return EXIT_OK


def _jobs_list(args, client, stdout, stderr) -> int:
    _print(client.list_jobs(status=args.status, model=args.model, limit=args.limit,
                            cursor=args.cursor), stdout)
    return EXIT_OK


def _models(args, client, stdout, stderr) -> int:
    _print({"models": client.models()}, stdout)
    return EXIT_OK


def _status(args, client, stdout, stderr) -> int:
    _print(client.status(), stdout)
    return EXIT_OK


def _print(data: Any, stdout: TextIO) -> None:
    stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()


def _add_api_commands(commands) -> None:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", help=f"the MES service (default: $MES_URL or {DEFAULT_URL})")
    api.add_argument("--key", help="the API key (default: $MES_API_KEY)")
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="wait until the job is final")
    waiting.add_argument("--wait-timeout", type=float, metavar="S",
                         help="give up waiting after S seconds (default: the job's deadline)")

    submit = commands.add_parser("submit", parents=[api, waiting], help="queue a job")
    submit.add_argument("--model", required=True)
    text = submit.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt")
    text.add_argument("--messages-file", metavar="F", help="a JSON list of messages ('-': stdin)")
    submit.add_argument("--format-file", metavar="F", help='a JSON Schema, or the JSON "json"')
    submit.add_argument("--system")
    submit.add_argument("--priority", choices=["interactive", "batch"])
    submit.add_argument("--timeout-s", type=int, help="the job's deadline from submission")
    submit.add_argument("--option", action="append", metavar="NAME=VALUE",
                        help="a sampling option, e.g. temperature=0.2 (repeatable)")
    submit.add_argument("--metadata", metavar="F", help="a JSON object file echoed back")
    submit.add_argument("--idempotency-key", help="makes the submission safe to repeat")
    submit.set_defaults(api=_submit)

    jobs = commands.add_parser("jobs", help="read, list or cancel jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    get = job_commands.add_parser("get", parents=[api, waiting], help="show one job")
    get.add_argument("job_id", metavar="ID")
    get.set_defaults(api=_jobs_get)
    cancel = job_commands.add_parser("cancel", parents=[api], help="cancel one job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(api=_jobs_cancel)
    listing = job_commands.add_parser("list", parents=[api], help="list your jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--model")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    listing.set_defaults(api=_jobs_list)

    commands.add_parser("models", parents=[api], help="list models").set_defaults(api=_models)
    commands.add_parser("status", parents=[api],
                        help="show queues, workers and counters (admin)").set_defaults(api=_status)


def _keys_create(args, keystore, environ, stdout, stderr) -> int:
    from mes.keys import check_name, parse_api_keys, parse_scopes
    try:
        name, scopes = check_name(args.name), parse_scopes(args.scopes)
        settings_names = {key.name for key in parse_api_keys(environ.get("MES_API_KEYS", ""))}
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if name in settings_names:
        raise UsageError(f"MES_API_KEYS already has a key named {name!r}")
    stored, secret = keystore.create(name, scopes, now=time.time())
    _print({**stored.as_dict(), "key": secret}, stdout)
    stderr.write("mes: keep this key now; it is stored only as a hash and is never shown again\n")
    return EXIT_OK


def _keys_list(args, keystore, environ, stdout, stderr) -> int:
    _print({"keys": [key.as_dict() for key in keystore.list()]}, stdout)
    return EXIT_OK


def _keys_revoke(args, keystore, environ, stdout, stderr) -> int:
    _print(keystore.revoke(args.name, now=time.time()).as_dict(), stdout)
    return EXIT_OK


def _add_keys_commands(commands) -> None:
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--redis-url", help="where keys are kept (default: $MES_REDIS_URL)")
    keys = commands.add_parser("keys", help="create, list or revoke API keys kept in Redis")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", parents=[store],
                                     help="make a key and print it once")
    create.add_argument("--name", required=True, help="the key's name; its jobs belong to it")
    create.add_argument("--scopes", required=True, help="comma-separated: jobs, models, admin")
    create.set_defaults(keys=_keys_create)
    key_commands.add_parser("list", parents=[store],
                            help="list keys (never their secrets)").set_defaults(keys=_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[store],
                                     help="revoke a key at once; its name is never reused")
    revoke.add_argument("name", metavar="NAME")
    revoke.set_defaults(keys=_keys_revoke)


def _run_keys(args: argparse.Namespace, environ: Mapping[str, str], stdout: TextIO,
              stderr: TextIO, redis=None) -> int:
    import redis as redis_lib

    from mes.errors import MESError
    from mes.store.apikeys import RedisKeyStore
    from mes.services import connect_redis
    from mes.settings import Settings
    url = args.redis_url or environ.get("MES_REDIS_URL") or Settings.redis_url
    try:
        keystore = RedisKeyStore(redis if redis is not None else connect_redis(url))
        return args.keys(args, keystore, environ, stdout, stderr)
    except UsageError as exc:
        stderr.write(f"mes: {exc}\n")
    except MESError as exc:
        stderr.write(f"mes: {exc.message}\n")
    except redis_lib.RedisError as exc:
        stderr.write(f"mes: cannot use Redis at {url}: {exc.__class__.__name__}: {exc}\n")
    return EXIT_ERROR


def _run_api(args: argparse.Namespace, environ: Mapping[str, str], stdout: TextIO,
             stderr: TextIO) -> int:
    from mes.client import MESClientError, WaitTimeout
    try:
        with _client(args, environ) as client:
            return args.api(args, client, stdout, stderr)
    except UsageError as exc:
        stderr.write(f"mes: {exc}\n")
    except WaitTimeout as exc:
        _print(exc.job, stdout)  # the job as it stands, so a script can still read its id
        stderr.write(f"mes: {exc.message}\n")
    except MESClientError as exc:
        stderr.write(f"mes: {exc}\n")
        if exc.details:
            stderr.write(f"mes: details: {json.dumps(exc.details)}\n")
    return EXIT_ERROR


def main(argv: list[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None, redis=None) -> int:
    """Parse the command line and run the chosen command; `redis` serves `mes keys` in tests."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from mes.bench.cli import main as bench_main
        return bench_main(argv[1:])
    if argv and argv[0] == "engine":
        # The engine shares no code with the rest of MES, its CLI included.
        from mes.engine.cli import main as engine_main
        return engine_main(argv[1:])
    parser = argparse.ArgumentParser(prog="mes", description="Model Execution Service")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="run the whole service locally (Ctrl-C stops it)")
    up.add_argument("--simulated", action="store_true",
                    help="use the simulated engine instead of a real model")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8001)
    up.add_argument("--web-workers", type=int, default=2)
    up.add_argument("--engine-port", type=int, default=11434)
    up.add_argument("--flower-port", type=int, default=5555)
    up.set_defaults(func=_up)
    commands.add_parser("engine", help="run the Ollama-protocol engine (see `mes engine -h`)")
    commands.add_parser("bench", help="measure MES on a private stack (see `mes bench -h`)")
    _add_keys_commands(commands)
    _add_api_commands(commands)
    args = parser.parse_args(argv)
    if getattr(args, "keys", None) is not None:
        return _run_keys(args, os.environ if environ is None else environ,
                         stdout or sys.stdout, stderr or sys.stderr, redis)
    if getattr(args, "api", None) is not None:
        return _run_api(args, os.environ if environ is None else environ,
                        stdout or sys.stdout, stderr or sys.stderr)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mes: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
