"""Run `mes jobs get|cancel|list`: read, cancel or list your jobs."""

from __future__ import annotations

import argparse
from functools import partial

from mes.cli.common import (EXIT_OK, Context, api_options, job_exit, print_json, run_api,
                            wait_for_job, wait_options)
from mes.cli.tables import job_view, jobs_view, json_option, show, wants_table


def add_parser(commands) -> None:
    """Register `mes jobs` and its get, cancel and list commands on `commands`."""
    api = api_options()
    jobs = commands.add_parser("jobs", help="read, list or cancel jobs")
    job_commands = jobs.add_subparsers(dest="jobs_command", required=True)
    get = job_commands.add_parser("get", parents=[api, wait_options(), json_option()],
                                  help="show one job")
    get.add_argument("job_id", metavar="ID")
    get.set_defaults(run=partial(run_api, get_job))
    cancel = job_commands.add_parser("cancel", parents=[api], help="cancel one job")
    cancel.add_argument("job_id", metavar="ID")
    cancel.set_defaults(run=partial(run_api, cancel_job))
    listing = job_commands.add_parser("list", parents=[api, json_option()],
                                      help="list your jobs, newest first")
    listing.add_argument("--status")
    listing.add_argument("--model")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    listing.set_defaults(run=partial(run_api, list_jobs))


def get_job(args: argparse.Namespace, client, context: Context) -> int:
    """Print one job, after waiting for it with --wait; exit by its outcome."""
    job = client.get(args.job_id)
    if args.wait:
        job = wait_for_job(client, job, args, context.stderr)
    if wants_table(args, context.stdout):
        show(job_view(job), context.stdout)
    else:
        print_json(job, context.stdout)
    return job_exit(job)


def cancel_job(args: argparse.Namespace, client, context: Context) -> int:
    """Cancel one job and print it."""
    print_json(client.cancel(args.job_id), context.stdout)
    return EXIT_OK


def list_jobs(args: argparse.Namespace, client, context: Context) -> int:
    """Print one page of your jobs, newest first: a table at a terminal, else its JSON."""
    page = client.list_jobs(status=args.status, model=args.model, limit=args.limit,
                            cursor=args.cursor)
    if wants_table(args, context.stdout):
        show(jobs_view(page), context.stdout)
    else:
        print_json(page, context.stdout)
    return EXIT_OK
