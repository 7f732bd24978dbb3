"""Run `mes batch submit|get|results|cancel`: many jobs from one JSONL file.

`submit` prints the batch as JSON on stdout (and with --wait, waits with a progress bar on
stderr and prints the final batch); `results` writes one JSON line per final job on stdout,
so `mes batch results ID > out.jsonl` keeps the output machine-readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mes.cli.common import (EXIT_JOB_FAILED, EXIT_OK, Context, UsageError, api_options,
                            print_json, run_api)

ENDED = ("succeeded", "failed", "cancelled", "expired")


def add_parser(commands) -> None:
    """Register `mes batch` and its sub-commands on `commands`."""
    api = api_options()
    batch = commands.add_parser("batch", help="submit a JSONL file of requests as one batch")
    sub = batch.add_subparsers(dest="batch_command", required=True)
    submit = sub.add_parser("submit", parents=[api], help="submit FILE.jsonl ('-': stdin)")
    submit.add_argument("file", metavar="FILE")
    submit.add_argument("--priority", choices=["interactive", "batch"], default="batch")
    submit.add_argument("--timeout-s", type=int,
                        help="each job's deadline, from when a worker is given it")
    submit.add_argument("--completion-window-s", type=int,
                        help="jobs not given to a worker within this expire (default 24 h)")
    submit.add_argument("--metadata", metavar="JSON", help="a JSON object kept with the batch")
    submit.add_argument("--wait", action="store_true",
                        help="wait for the batch to end, with a progress bar on stderr")
    submit.set_defaults(run=partial(run_api, submit_batch))
    get = sub.add_parser("get", parents=[api], help="show one batch and its counts")
    get.add_argument("batch_id", metavar="ID")
    get.add_argument("--wait", action="store_true", help="wait for it to end, with a progress bar")
    get.set_defaults(run=partial(run_api, get_batch))
    results = sub.add_parser("results", parents=[api], help="write its results as JSONL")
    results.add_argument("batch_id", metavar="ID")
    results.add_argument("--cursor", type=int, default=0, help="start at this request index")
    results.set_defaults(run=partial(run_api, batch_results))
    cancel = sub.add_parser("cancel", parents=[api], help="cancel every job not yet final")
    cancel.add_argument("batch_id", metavar="ID")
    cancel.set_defaults(run=partial(run_api, cancel_batch))


def read_requests(path: str) -> list[dict[str, Any]]:
    """Read one request per line (blank lines skipped); say which line is not JSON."""
    text = sys.stdin.read() if path == "-" else _read(path)
    requests = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                requests.append(json.loads(line))
            except ValueError as exc:
                raise UsageError(f"{path}:{number}: not JSON: {exc}") from exc
    return requests


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc


def submit_batch(args: argparse.Namespace, client, context: Context) -> int:
    """Submit the file's requests as one batch; with --wait, follow it to its end."""
    metadata = json.loads(args.metadata) if args.metadata else None
    batch = client.submit_batch(read_requests(args.file), priority=args.priority,
                                metadata=metadata, timeout_s=args.timeout_s,
                                completion_window_s=args.completion_window_s)
    if args.wait:
        batch = follow(client, batch, context.stderr)
    print_json(batch, context.stdout)
    return batch_exit(batch) if args.wait else EXIT_OK


def get_batch(args: argparse.Namespace, client, context: Context) -> int:
    """Print one batch, after following it to its end with --wait."""
    batch = client.batch(args.batch_id)
    if args.wait:
        batch = follow(client, batch, context.stderr)
    print_json(batch, context.stdout)
    return batch_exit(batch) if args.wait else EXIT_OK


def batch_results(args: argparse.Namespace, client, context: Context) -> int:
    """Write every result line in request order, waiting for jobs still running."""
    for line in client.iter_batch_results(args.batch_id, cursor=args.cursor):
        context.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    context.stdout.flush()
    return EXIT_OK


def cancel_batch(args: argparse.Namespace, client, context: Context) -> int:
    """Cancel the batch and print it with its counts."""
    print_json(client.cancel_batch(args.batch_id), context.stdout)
    return EXIT_OK


def batch_exit(batch: dict[str, Any]) -> int:
    """Return 0 when every job succeeded, 1 otherwise."""
    counts = batch.get("request_counts") or {}
    return EXIT_OK if counts.get("succeeded") == counts.get("total") else EXIT_JOB_FAILED


def follow(client, batch: dict[str, Any], stream: TextIO) -> dict[str, Any]:
    """Wait for the batch to end; draw a progress bar at a terminal, else a line per change."""
    total = batch["request_counts"]["total"]
    tty = bool(getattr(stream, "isatty", None) and stream.isatty())
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                   console=Console(file=stream, force_terminal=tty), disable=not tty)
    task = bar.add_task(batch["id"], total=total, detail="")
    last: list[str] = []

    def show(current: dict[str, Any]) -> None:
        counts = current["request_counts"]
        ended = sum(counts[state] for state in ENDED)
        detail = f"{counts['running']} running, {counts['failed']} failed"
        bar.update(task, completed=ended, detail=detail)
        line = f"{current['id']} {current['status']} {ended}/{total} ({detail})"
        if not tty and (not last or last[-1] != line):
            stream.write(line + "\n")
            stream.flush()
            last.append(line)

    with bar:
        return client.wait_batch(batch["id"], poll_s=1.0, on_progress=show)
