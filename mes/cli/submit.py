"""Run `mes submit`: queue a job and optionally wait for it."""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any

from mes.cli.common import (EXIT_OK, Context, UsageError, api_options, job_exit, print_json,
                            read_json, run_api, wait_for_job, wait_options)


def add_parser(commands) -> None:
    """Register `mes submit` on the sub-command action `commands`."""
    submit = commands.add_parser("submit", parents=[api_options(), wait_options()],
                                 help="queue a job")
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
    submit.add_argument("--stream", action="store_true",
                        help="print the text on stdout as it is generated, the outcome on stderr")
    submit.set_defaults(run=partial(run_api, submit_job))


def submit_job(args: argparse.Namespace, client, context: Context) -> int:
    """Queue the job the arguments describe; with --wait, wait for it and exit by its outcome."""
    fields: dict[str, Any] = {"priority": args.priority, "system": args.system,
                              "timeout_s": args.timeout_s}
    if args.messages_file:
        fields["messages"] = read_json(args.messages_file, "messages")
    if args.format_file:
        fields["format"] = read_json(args.format_file, "the format")
    if args.option:
        fields["options"] = dict(parse_option(text) for text in args.option)
    if args.metadata:
        fields["metadata"] = read_json(args.metadata, "metadata")
    if args.stream:
        return stream_job(client.stream(args.model, args.prompt,
                                        idempotency_key=args.idempotency_key, **fields), context)
    job = client.submit(args.model, args.prompt, idempotency_key=args.idempotency_key, **fields)
    if args.wait:
        job = wait_for_job(client, job, args, context.stderr)
    print_json(job, context.stdout)
    return job_exit(job) if args.wait else EXIT_OK


def stream_job(events, context: Context) -> int:
    """Print a job's text as it streams; say its outcome on stderr and exit by it."""
    from mes.client_events import DoneEvent, RestartEvent, StatusEvent, TokenEvent
    out, err = context.stdout, context.stderr
    job: dict[str, Any] = {}
    for event in events:
        if isinstance(event, TokenEvent):
            out.write(event.text)
            out.flush()
        elif isinstance(event, RestartEvent):
            # stdout cannot take text back: mark the break and say why on stderr.
            out.write("\n")
            err.write(f"mes: the job started over ({event.data}); the text above is void\n")
        elif isinstance(event, StatusEvent) and event.status == "queued" and "position" in event.data:
            err.write(f"mes: queued, #{event.data['position']}\n")
        elif isinstance(event, DoneEvent):
            job = event.job
    out.write("\n")
    out.flush()
    error = job.get("error") or {}
    err.write(f"mes: {job.get('id')} {job.get('status')}"
              + (f": {error.get('code')}: {error.get('message')}" if error else "") + "\n")
    return job_exit(job)


def parse_option(text: str) -> tuple[str, Any]:
    """Split NAME=VALUE into a name and a JSON value, or the raw text when it is not JSON."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise UsageError(f"--option wants NAME=VALUE, not {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw  # a bare word such as a stop string
