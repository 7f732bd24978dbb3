"""Share what the `mes` commands have in common: exit codes, JSON output, the client, waiting.

API commands print JSON to stdout and progress to stderr. Exit codes: 0 success, 1 the job
failed, was cancelled or expired, 2 a usage or API error.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

DEFAULT_URL = "http://127.0.0.1:8001"
EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR = 0, 1, 2
PROGRESS_POLL_S = 2  # long polls short enough to refresh the elapsed time on a terminal
FINAL_STATUSES = ("succeeded", "failed", "cancelled", "expired")


class UsageError(Exception):
    """Report a bad command line that argparse could not catch."""


@dataclass(frozen=True)
class Context:
    """Hold what a command runs with besides its arguments; `redis` serves `mes keys` in tests."""

    environ: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO
    redis: Any = None


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
            if status in FINAL_STATUSES:
                self.stream.write("\n")
        elif text != self._last:
            self.stream.write(f"{text} after {elapsed_s:.1f}s\n")
        self._last = text
        self.stream.flush()


def print_json(data: Any, stdout: TextIO) -> None:
    """Write `data` to stdout as indented JSON."""
    stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    stdout.flush()


def read_json(path: str, what: str) -> Any:
    """Load JSON from a file, or from stdin when `path` is '-'."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {what} from {path}: {exc}") from exc


def api_options(*, keep_parents: bool = False) -> argparse.ArgumentParser:
    """Return the parent parser of --url and --key that every API command takes.

    keep_parents: for a sub-command under a command that takes them too, so that an option
    given before the sub-command's name is not reset by the sub-command's default.
    """
    default = argparse.SUPPRESS if keep_parents else None
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", default=default,
                     help=f"the MES service (default: $MES_URL or {DEFAULT_URL})")
    api.add_argument("--key", default=default, help="the API key (default: $MES_API_KEY)")
    return api


def wait_options() -> argparse.ArgumentParser:
    """Return the parent parser of --wait and --wait-timeout."""
    waiting = argparse.ArgumentParser(add_help=False)
    waiting.add_argument("--wait", action="store_true", help="wait until the job is final")
    waiting.add_argument("--wait-timeout", type=float, metavar="S",
                         help="give up waiting after S seconds (default: the job's deadline)")
    return waiting


def make_client(args: argparse.Namespace, environ: Mapping[str, str]):
    """Build the MESClient from --url and --key, falling back on $MES_URL and $MES_API_KEY."""
    from mes.client import MESClient
    key = args.key or environ.get("MES_API_KEY")
    if not key:
        raise UsageError("no API key: pass --key or set MES_API_KEY")
    return MESClient(args.url or environ.get("MES_URL") or DEFAULT_URL, key)


def wait_for_job(client, job: dict[str, Any], args: argparse.Namespace, stderr: TextIO) -> dict:
    """Wait until the job is final, showing its progress on stderr."""
    from mes.client import job_wait_budget_s
    progress = Progress(stderr)
    timeout_s = args.wait_timeout if args.wait_timeout is not None else job_wait_budget_s(job)
    return client.wait(job["id"], timeout_s, poll_s=PROGRESS_POLL_S if progress.tty else 10,
                       on_progress=progress)


def job_exit(job: dict[str, Any]) -> int:
    """Return the exit code for a job: 1 when it failed, was cancelled or expired."""
    return EXIT_JOB_FAILED if job.get("status") in ("failed", "cancelled", "expired") else EXIT_OK


def run_api(command: Callable[..., int], args: argparse.Namespace, context: Context) -> int:
    """Run an API command with a client; report its errors on stderr as exit code 2."""
    from mes.client import MESClientError, WaitTimeout
    stdout, stderr = context.stdout, context.stderr
    try:
        with make_client(args, context.environ) as client:
            return command(args, client, context)
    except UsageError as exc:
        stderr.write(f"mes: {exc}\n")
    except WaitTimeout as exc:
        print_json(exc.job, stdout)  # the job as it stands, so a script can still read its id
        stderr.write(f"mes: {exc.message}\n")
    except MESClientError as exc:
        stderr.write(f"mes: {exc}\n")
        if exc.details:
            stderr.write(f"mes: details: {json.dumps(exc.details)}\n")
    return EXIT_ERROR


def run_keys(command: Callable[..., int], args: argparse.Namespace, context: Context) -> int:
    """Run a keys command on the Redis key store; report its errors on stderr as exit code 2."""
    import redis as redis_lib

    from mes.errors import MESError
    from mes.services import connect_redis
    from mes.settings import Settings
    from mes.store.apikeys import RedisKeyStore
    stderr = context.stderr
    url = args.redis_url or context.environ.get("MES_REDIS_URL") or Settings.redis_url
    try:
        redis = context.redis if context.redis is not None else connect_redis(url)
        return command(args, RedisKeyStore(redis), context)
    except UsageError as exc:
        stderr.write(f"mes: {exc}\n")
    except MESError as exc:
        stderr.write(f"mes: {exc.message}\n")
    except redis_lib.RedisError as exc:
        stderr.write(f"mes: cannot use Redis at {url}: {exc.__class__.__name__}: {exc}\n")
    return EXIT_ERROR
